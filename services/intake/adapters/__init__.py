"""intake's adapters: the Kafka writer and the Redis stores."""
