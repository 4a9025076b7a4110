"""Reliability checks (RELIABILITY.md R1–R5): faults injected into the real PostgreSQL and
RabbitMQ, each test in its own vhost and databases."""
