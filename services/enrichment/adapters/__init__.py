"""enrichment's I/O: none of its own; the runtime reads, writes and keeps its tables."""
