"""enrichment: Normalises, redacts PII and joins per-customer state (faust)."""
