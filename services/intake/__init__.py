"""intake: HTTP front door: authenticates, validates, deduplicates, rate-limits and writes to Kafka."""
