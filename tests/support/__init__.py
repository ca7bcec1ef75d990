"""Test support: child processes, the platform a test run shares, readers and receivers."""
