"""The status consumer's I/O: its Redis store."""
