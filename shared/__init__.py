"""The library every pipeline service uses: settings, Kafka clients, serde, topics, errors, health."""
