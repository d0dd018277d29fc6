"""rollcall's test suite."""
