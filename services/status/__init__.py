"""status: projects what Kafka committed into the event status record in Redis."""
