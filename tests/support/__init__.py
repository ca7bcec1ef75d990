"""Test support: child processes, the shared platform, readers, a webhook receiver and test-data factories."""
