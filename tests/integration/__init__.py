"""Integration tests: real brokers, real SQLite files, real processes."""
