"""S7 on the real tier (PostgreSQL + RabbitMQ): every service's OpenAPI, fuzzed through the
gateway as each caller; PostgreSQL refuses what SQLite lets through (a string longer than its
column, say).

What the fuzz checks, and why each check is on or off: ``tests/fuzzing.py``.
"""

from tests.fuzzing import contract_tests

tokens, test_the_service_keeps_its_published_contract = contract_tests("real")
