"""End-to-end tests: the real commands as a person runs them."""
