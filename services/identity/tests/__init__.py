"""identity's tests: domain rules, the HTTP API on SQLite and PostgreSQL, the CLI."""
