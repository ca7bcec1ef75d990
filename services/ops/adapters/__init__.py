"""ops' I/O: the replay jobs, each run against Kafka in a thread of its own."""
