"""What only tests use: helpers and fixtures of the pytest suite, never imported by the CLI."""
