"""servicekit: the building blocks every eCourt service stands on.

Database and unit of work, the CloudEvents envelope, the transactional outbox and its relay,
the inbox-backed consumer, problem+json errors, idempotency keys, JWT verification, logging,
metrics and health. It imports nothing from ``services``, ``gateway`` or ``ecourt``.
"""
