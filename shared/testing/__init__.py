"""Test-data factories shared by tests/ and loadtest/."""
