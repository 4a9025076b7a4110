"""How long the kit's own tables keep a row, and the chunked deletes that hold them to it.

Without this, three tables grow with every event and every unsafe request ever made:

* ``outbox``: a sent row is kept ``outbox`` long (seven days: enough to trace a delivery), an
  unsent one forever, however old;
* ``inbox``: a handled event's id is kept ``inbox`` long (thirty days). The inbox only has to
  catch a *duplicate*, and a duplicate arrives soon after the first copy: a redelivery after a
  consumer crash, or a batch the relay republished after dying between the broker's confirm
  and its commit. A dead-lettered event was never recorded (its handler failed), so replaying
  the DLQ later does not depend on the inbox. A month covers a consumer left stopped for weeks
  with a queue of both copies behind it;
* ``idempotency_keys``: a key is kept ``idempotency_keys`` long (a day, as payment APIs do);
  after that the key is free again (``servicekit.idempotency`` treats an older row as absent).
  This also frees a key left reserved by a process that died in the middle of its request.

The fourth kit table, ``audit_trail``, is not pruned at all: it is the record the law asks to
keep (at least six months), and its triggers refuse deletes (``servicekit.audit``).

``None`` keeps a table's rows forever. The relay calls ``prune`` when it has nothing to
publish (``servicekit.relay``). Each chunk is one short transaction that deletes the oldest
expired rows through the age index, skipping rows another relay of the service is deleting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Delete, Table, bindparam, delete, select, tuple_

from servicekit.db import Database
from servicekit.tables import idempotency_keys, inbox, outbox


@dataclass(frozen=True)
class Retention:
    """How long each kit table keeps a row (``None``: forever)."""

    outbox: timedelta | None = timedelta(days=7)
    inbox: timedelta | None = timedelta(days=30)
    idempotency_keys: timedelta | None = timedelta(hours=24)

    def of(self, table: str) -> timedelta | None:
        value: timedelta | None = getattr(self, table)
        return value


#: keep every row of every table
KEEP_ALL = Retention(outbox=None, inbox=None, idempotency_keys=None)


def _expired_rows(table: Table, age: ColumnElement[datetime], *extra: ColumnElement[bool]
                  ) -> Delete:
    """DELETE the oldest ``:size`` rows of ``table`` whose ``age`` is before ``:cutoff``."""
    key = [c for c in table.primary_key.columns]
    oldest = (select(*key).where(*extra, age < bindparam("cutoff"))
              .order_by(age).limit(bindparam("size"))
              .with_for_update(skip_locked=True))
    return delete(table).where(tuple_(*key).in_(oldest))


#: each table's delete; the outbox's unsent rows are never expired
_DELETES: dict[str, Delete] = {
    "outbox": _expired_rows(outbox, outbox.c.sent_at, outbox.c.sent_at.is_not(None)),
    "inbox": _expired_rows(inbox, inbox.c.received_at),
    "idempotency_keys": _expired_rows(idempotency_keys, idempotency_keys.c.created_at),
}
TABLES = tuple(_DELETES)


def prune(db: Database, retention: Retention, now: datetime, chunk: int = 1000,
          max_chunks: int | None = None) -> dict[str, int]:
    """Delete each table's rows older than its retention before ``now``, ``chunk`` rows per
    transaction and at most ``max_chunks`` chunks per table; how many went, by table."""
    deleted: dict[str, int] = {}
    for table, statement in _DELETES.items():
        keep = retention.of(table)
        if keep is None:
            continue
        params = {"cutoff": now - keep, "size": chunk}
        total = rounds = 0
        while max_chunks is None or rounds < max_chunks:
            with db.transaction() as session:
                count = session.execute(statement, params).rowcount
            total += count
            rounds += 1
            if count < chunk:
                break
        if total:
            deleted[table] = total
    return deleted
