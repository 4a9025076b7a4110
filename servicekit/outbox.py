"""Writing to the transactional outbox.

``emit`` adds the event to the *caller's* session: it commits with the state change or not at
all, so there is no ghost event (sent but rolled back) and no zombie record (saved, never sent).

``emit`` also masks every ID number and mobile in the strings of the event's data
(``servicekit.logs.scrub_value``: ``440***********1234``, ``138****5678``), at any depth, before
the event is built (RELIABILITY S6, DESIGN: never in an event in clear). Events carry text that
people typed — a rejection reason, a name, an SMS text built from them — and masking here, once,
means no event type and no future field can forget it. The only values kept byte for byte are
those under an opaque key (``is_opaque``): sealed ciphertext and digests, where a run of digits
is noise and changing it would break the value. UUIDs are left alone by ``scrub`` itself.
"""

from __future__ import annotations

import json
import weakref
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, event, func, insert, select, update
from sqlalchemy import exc as exc_
from sqlalchemy.orm import Session

from servicekit import context
from servicekit.db import WROTE, utcnow
from servicekit.envelope import CloudEvent
from servicekit.logs import scrub_value
from servicekit.publishers import TOPIC
from servicekit.tables import outbox

#: One statement, compiled once: the outbox insert rides on every state change.
_INSERT = insert(outbox)

#: On PostgreSQL the row is not sent at once: it waits on the connection (under this key of
#: ``Connection.info``) until the next statement of the transaction, or until the commit, which
#: then sends it together with COMMIT in one pipeline. A state change's own round trip to the
#: database was most of what the outbox cost; this removes it.
QUEUED = "servicekit.outbox.queued"
#: the columns a queued row fills, in the order ``emit`` builds the row (the others: ``id`` is
#: the database's, ``sent_at`` and ``last_error`` the relay's): ``_SQL`` lists them, and
#: tests/reliability/test_outbox_queue.py checks that both agree with ``tables.outbox``
QUEUED_COLUMNS = ("event_id", "type", "exchange", "routing_key", "body", "headers",
                  "created_at", "available_at", "attempts")
_SQL = ("INSERT INTO outbox (event_id, type, exchange, routing_key, body, headers, created_at,"
        " available_at, attempts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)")
#: the engines whose connections flush queued rows before every statement (``install``)
_QUEUEING: weakref.WeakSet[Engine] = weakref.WeakSet()


def install(engine: Engine) -> None:
    """Let sessions on ``engine`` (PostgreSQL + psycopg) queue their outbox rows.

    Queued rows are inserted before any other statement runs on the connection (a read of the
    outbox, a SAVEPOINT, a RELEASE or ROLLBACK TO, an ORM flush), so everything that runs
    later in the transaction sees them and they sit exactly where an immediate insert would
    have, savepoints included: a row emitted inside a savepoint that rolls back goes with it.
    The commit sends what is left with COMMIT in one pipeline (after the session's
    ``before_commit`` hooks and its flush, which run before the connection commits); a
    rollback drops them. Without ``install`` (SQLite, other drivers) ``enqueue`` inserts at
    once.
    """
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return
    _QUEUEING.add(engine)
    event.listen(engine, "before_cursor_execute", _insert_before_statement)
    event.listen(engine, "commit", _insert_with_commit)
    event.listen(engine, "rollback", _drop)
    event.listen(engine, "checkin", _drop_on_checkin)


def _insert(cursor: Any, rows: list[tuple[Any, ...]]) -> None:
    if len(rows) == 1:
        cursor.execute(_SQL, rows[0])
    else:
        cursor.executemany(_SQL, rows)


def _insert_before_statement(conn: Connection, *_args: Any) -> None:
    """Insert the queued rows before the statement about to run (SQLAlchemy wraps errors)."""
    rows = conn.info.pop(QUEUED, None)
    if rows:
        with conn.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
            _insert(cursor, rows)


def _insert_with_commit(conn: Connection) -> None:
    """Send the queued rows and COMMIT in one round trip, just before the driver's commit
    (which then finds the transaction closed and sends nothing).

    If an insert fails, the server skips the COMMIT (a pipeline stops at its first error) and
    the error is raised as SQLAlchemy's own, as any failed commit; the caller rolls back."""
    rows = conn.info.pop(QUEUED, None)
    if not rows:
        return
    raw = conn.connection.driver_connection
    try:
        with raw.pipeline(), raw.cursor() as cursor:  # type: ignore[union-attr]
            _insert(cursor, rows)
            cursor.execute("COMMIT")
    except conn.dialect.loaded_dbapi.Error as exc:
        raise exc_.DBAPIError.instance(_SQL, rows, exc, conn.dialect.loaded_dbapi.Error,
                                       dialect=conn.dialect, ismulti=len(rows) > 1) from exc


def _drop(conn: Connection) -> None:
    if conn.invalidated:
        # the database went away mid-transaction: asking an invalidated connection for its
        # ``info`` raises, and raising here would turn the rollback of a lost connection into
        # a PendingRollbackError; the rows go with the pool record at check-in
        return
    conn.info.pop(QUEUED, None)


def _drop_on_checkin(_dbapi_conn: Any, record: Any) -> None:
    record.info.pop(QUEUED, None)


def is_opaque(key: object) -> bool:
    """Whether a data field holds an opaque value that must travel exactly as it is: sealed
    ciphertext (``*_sealed``: Fernet's base64 can hold a run of 11 digits) or a digest
    (``sha256``, ``*_sha256``). Every other string of an event's data is masked."""
    return isinstance(key, str) and (key.endswith("_sealed") or key == "sha256"
                                     or key.endswith("_sha256"))


def emit(session: Session, type_: str, data: dict[str, Any], *, source: str,
         subject: str | None = None) -> CloudEvent:
    """Record an event for publication to the topic exchange, in the caller's transaction,
    its data's ID numbers and mobiles masked (opaque fields, numbers and booleans as given)."""
    data = scrub_value(data, numbers=False, opaque=is_opaque)
    event_ = CloudEvent(type=type_, source=source, data=data, subject=subject,
                        correlationid=context.correlation_id(),
                        causationid=context.causation_id())
    enqueue(session, event_, exchange=TOPIC, routing_key=type_)
    return event_


def enqueue(session: Session, event: CloudEvent, *, exchange: str, routing_key: str,
            headers: dict[str, Any] | None = None, delay: float = 0.0,
            now: datetime | None = None) -> None:
    """Add one outbox row: ``exchange=TOPIC`` publishes to the suite's topic exchange with
    ``routing_key`` = the type; ``exchange=QUEUE`` sends to the queue named ``routing_key``
    directly (retries and dead letters)."""
    if now is None:
        now = utcnow()
    elif now.tzinfo is None:
        raise ValueError("naive datetime: times are stored in UTC and must carry a zone")
    available = now + timedelta(seconds=delay) if delay else now
    header_text = json.dumps(headers) if headers else "{}"
    if (session.bind or session.get_bind()) in _QUEUEING:
        conn = session.connection()
        row = (event.id, event.type, exchange, routing_key, event.to_json(), header_text,
               now.astimezone(UTC), available.astimezone(UTC), 0)
        queued = conn.info.get(QUEUED)
        conn.info[WROTE] = True  # written at COMMIT, past the statements that mark a write
        if queued is None:
            conn.info[QUEUED] = [row]
        else:
            queued.append(row)
        return
    session.execute(_INSERT, {
        "event_id": event.id, "type": event.type, "exchange": exchange,
        "routing_key": routing_key, "body": event.to_json(), "headers": header_text,
        "created_at": now, "available_at": available, "attempts": 0,
    })


def backlog(session: Session) -> int:
    """How many rows wait to be published (a metric and a readiness hint)."""
    return session.scalar(select(func.count()).select_from(outbox)
                          .where(outbox.c.sent_at.is_(None))) or 0


def sent_since(session: Session, since: datetime) -> list[Row[Any]]:
    """The rows marked sent at or after ``since``: (id, event_id, type, exchange)."""
    if since.tzinfo is None:
        raise ValueError("naive datetime: times are stored in UTC and must carry a zone")
    return list(session.execute(
        select(outbox.c.id, outbox.c.event_id, outbox.c.type, outbox.c.exchange)
        .where(outbox.c.sent_at >= since)).all())


def mark_unsent(session: Session, ids: list[int]) -> int:
    """Mark rows unsent, so the relay publishes them again (for a bus that lost them: the
    embedded tier's in-memory transport keeps nothing when its process ends)."""
    marked = 0
    for start in range(0, len(ids), 500):
        result = session.execute(update(outbox).where(outbox.c.id.in_(ids[start:start + 500]))
                                 .values(sent_at=None))
        marked += int(result.rowcount or 0)
    return marked
