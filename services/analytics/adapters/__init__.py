"""analytics' I/O: the faust app and its mends, and the Redis serving store."""
