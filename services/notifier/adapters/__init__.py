"""The notifier's I/O: webhook calls over HTTP, and its Redis state."""
