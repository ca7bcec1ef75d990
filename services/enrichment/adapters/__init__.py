"""enrichment's I/O: the faust app (broker, tables, agents) and its mends to faust."""
