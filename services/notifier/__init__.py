"""notifier: Delivers results to webhooks (signed, retried, circuit-broken) and records receipts."""
