"""enrichment: Normalises, redacts PII and joins per-customer state (tables of the shared runtime)."""
