"""The kit's own tables, defined into each service's metadata (and so its migrations).

* ``outbox``           events (and delayed retries) written in the state change's transaction
* ``inbox``            (consumer, event id) of every handled event: redelivery is a no-op
* ``idempotency_keys`` the first answer to each unsafe request with an ``Idempotency-Key``
* ``audit_trail``      who did what, when, from where: append-only, hash-chained
                       (``servicekit.audit``)
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from servicekit.db import NAMING, BigId, UtcDateTime

_KIT = MetaData(naming_convention=NAMING)

outbox = Table(
    "outbox",
    _KIT,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("type", String(200), nullable=False),
    # Where the row goes: "topic" (the suite's topic exchange, routing key = type) or
    # "queue" (one queue by name: a delayed retry, or the dead-letter queue).
    Column("exchange", String(200), nullable=False, server_default=""),
    Column("routing_key", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("headers", Text, nullable=False, server_default="{}"),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("available_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime(), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
)
Index(
    "ix_outbox_unsent",
    outbox.c.available_at,
    outbox.c.id,
    postgresql_where=outbox.c.sent_at.is_(None),
    sqlite_where=outbox.c.sent_at.is_(None),
)
# Sent rows by age, for the relay's pruning (``servicekit.retention``). Partial: a new row has no
# ``sent_at`` and is not in it, so writing an event costs nothing more.
Index(
    "ix_outbox_sent",
    outbox.c.sent_at,
    postgresql_where=outbox.c.sent_at.is_not(None),
    sqlite_where=outbox.c.sent_at.is_not(None),
)
inbox = Table(
    "inbox",
    _KIT,
    Column("consumer", String(100), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("type", String(200), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("consumer", "event_id"),
)
# Entries by age, for the relay's pruning (``servicekit.retention``).
Index("ix_inbox_received", inbox.c.received_at)
idempotency_keys = Table(
    "idempotency_keys",
    _KIT,
    Column("key", String(200), nullable=False),
    Column("principal", String(100), nullable=False),
    Column("method", String(10), nullable=False),
    Column("path", String(500), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("headers", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("key", "principal"),
)
# Keys by age, for the relay's pruning (``servicekit.retention``).
Index("ix_idempotency_keys_created", idempotency_keys.c.created_at)


audit_trail = Table(
    "audit_trail",
    _KIT,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("roles", String(200), nullable=False, server_default=""),
    Column("source", String(100), nullable=False, server_default=""),
    Column("request_id", String(64), nullable=True),
    Column("action", String(100), nullable=False),
    Column("subject", String(200), nullable=False, server_default=""),
    Column("outcome", String(20), nullable=False),
    Column("detail", Text, nullable=False, server_default="{}"),
    # set once, by ``servicekit.audit.seal``; the triggers refuse any other change
    Column("chain_pos", BigInteger, nullable=True),
    Column("prev_hash", String(64), nullable=True),
    Column("entry_hash", String(64), nullable=True),
    Column("sealed_at", UtcDateTime(), nullable=True),
    UniqueConstraint("chain_pos"),
)
# what the sealer has still to chain (partial: a sealed entry leaves it)
Index(
    "ix_audit_trail_unsealed",
    audit_trail.c.id,
    postgresql_where=audit_trail.c.entry_hash.is_(None),
    sqlite_where=audit_trail.c.entry_hash.is_(None),
)
# an object's history ("who touched case X, and when")
Index("ix_audit_trail_subject", audit_trail.c.subject, audit_trail.c.id)
Index("ix_audit_trail_at", audit_trail.c.at)


def define(metadata: MetaData) -> None:
    """Copy the kit's tables into a service's metadata, so its migrations create them."""
    for table in (outbox, inbox, idempotency_keys, audit_trail):
        table.to_metadata(metadata)
