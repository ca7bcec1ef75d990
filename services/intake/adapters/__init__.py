"""intake's I/O: the Kafka writer and the Redis store."""
