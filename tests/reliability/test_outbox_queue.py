"""The outbox row waits on the connection and travels with COMMIT (PostgreSQL), yet behaves
exactly like an immediate insert: the transaction sees it, a savepoint that rolls back takes it
along, a failed commit leaves neither the row nor the state change. SQLite inserts at once and
must behave the same."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import exc, func, insert, select

from servicekit.db import Database, utcnow
from servicekit.outbox import _SQL, QUEUED, QUEUED_COLUMNS, backlog, emit
from servicekit.tables import outbox
from tests.reliability.helpers import NOTIFICATIONS, count

TYPE = "reliability.queue.happened"


@pytest.fixture
def db(kit_db: Database) -> Database:
    return kit_db


def state_write(session, n: int) -> None:  # type: ignore[no-untyped-def]
    session.execute(insert(NOTIFICATIONS).values(
        id=str(uuid.uuid4()), account_id=str(uuid.uuid4()), category="test", title="queue",
        body=str(n), source_event_id=str(uuid.uuid4()), created_at=utcnow()))


def bodies(db: Database) -> list[int]:
    with db.transaction() as s:
        return [int(b.split('"n":')[1].split("}")[0])
                for b in s.scalars(select(outbox.c.body).order_by(outbox.c.id))]


def states(db: Database) -> int:
    return count(db, select(func.count()).select_from(NOTIFICATIONS))


def test_the_row_commits_with_the_state_change_and_waits_until_then_on_postgres(db) -> None:  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        state_write(s, 1)
        emit(s, TYPE, {"n": 1}, source="/reliability")
        emit(s, TYPE, {"n": 2}, source="/reliability")
        queued = s.connection().info.get(QUEUED) or []
        assert len(queued) == (2 if db.is_postgres else 0)
    assert bodies(db) == [1, 2] and states(db) == 1


def test_the_transaction_sees_its_own_rows(db) -> None:  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        emit(s, TYPE, {"n": 1}, source="/reliability")
        assert backlog(s) == 1
        emit(s, TYPE, {"n": 2}, source="/reliability")
        assert s.scalar(select(func.count()).select_from(outbox)) == 2
    assert bodies(db) == [1, 2]


def test_a_savepoint_that_rolls_back_takes_its_rows_along(db) -> None:  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        emit(s, TYPE, {"n": 1}, source="/reliability")  # before the savepoint: kept
        with pytest.raises(RuntimeError), s.begin_nested():
            emit(s, TYPE, {"n": 2}, source="/reliability")
            raise RuntimeError("handler failed")
        with s.begin_nested():
            emit(s, TYPE, {"n": 3}, source="/reliability")  # released: kept
        try:
            with s.begin_nested():
                state_write(s, 4)
                emit(s, TYPE, {"n": 4}, source="/reliability")  # the last statement
                raise RuntimeError("handler failed after its last write")
        except RuntimeError:
            emit(s, TYPE, {"n": 5}, source="/reliability")  # the retry row, after it
    assert bodies(db) == [1, 3, 5] and states(db) == 0


def test_a_rollback_drops_the_rows_and_leaves_the_connection_clean(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError), db.transaction() as s:
        state_write(s, 1)
        emit(s, TYPE, {"n": 1}, source="/reliability")
        raise RuntimeError("the request failed")
    with db.transaction() as s:  # the same pooled connection
        state_write(s, 2)
    with db.transaction() as s:
        emit(s, TYPE, {"n": 3}, source="/reliability")
    assert bodies(db) == [3] and states(db) == 1


def test_a_session_committed_by_hand_commits_its_rows_too(db) -> None:  # type: ignore[no-untyped-def]
    session = db.sessions()
    try:
        emit(session, TYPE, {"n": 1}, source="/reliability")
        session.commit()
        emit(session, TYPE, {"n": 2}, source="/reliability")
        session.rollback()
    finally:
        session.close()
    assert bodies(db) == [1]


def test_a_failed_pipelined_commit_leaves_nothing(make_dbs) -> None:  # type: ignore[no-untyped-def]
    [db] = make_dbs("queue_fail")
    with pytest.raises(exc.DBAPIError), db.transaction() as s:
        state_write(s, 1)
        emit(s, TYPE, {"n": 1}, source="/reliability")
        emit(s, "x" * 300, {"n": 2}, source="/reliability")  # too long for outbox.type
    assert states(db) == 0 and bodies(db) == []
    with db.transaction() as s:  # the connection is usable, and nothing lingers on it
        state_write(s, 3)
        emit(s, TYPE, {"n": 3}, source="/reliability")
    assert states(db) == 1 and bodies(db) == [3]


def test_the_queued_insert_fills_every_column_the_relay_does_not() -> None:
    """The pipelined INSERT is raw SQL: a column added to the table must be added there too
    (or be one the database or the relay fills)."""
    filled_elsewhere = {"id", "sent_at", "last_error"}
    assert set(QUEUED_COLUMNS) == {c.name for c in outbox.columns} - filled_elsewhere
    assert len(QUEUED_COLUMNS) == len(set(QUEUED_COLUMNS))
    listed = _SQL.split("(", 1)[1].split(")", 1)[0]
    assert [c.strip() for c in listed.split(",")] == list(QUEUED_COLUMNS)
    assert _SQL.count("%s") == len(QUEUED_COLUMNS)


def test_a_connection_lost_mid_transaction_raises_the_loss_not_a_pending_rollback(
        make_dbs) -> None:  # type: ignore[no-untyped-def]
    """The database goes away with a row queued: the caller sees the lost connection (an
    OperationalError, which the services answer with 503 and the consumer retries), and the
    rollback that follows does not trip over the invalidated connection."""
    from sqlalchemy.exc import OperationalError

    from servicekit.testing import TcpProxy
    from tests.reliability.helpers import databases

    [direct] = make_dbs("lost")
    proxy = TcpProxy("127.0.0.1", 5432)
    try:
        with databases(direct.url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")) as [db]:
            db.ping()  # a pooled connection, then the line goes
            with pytest.raises(OperationalError), db.transaction() as s:
                state_write(s, 1)
                emit(s, TYPE, {"n": 1}, source="/reliability")
                proxy.cut()
                s.execute(select(1))
            proxy.heal()
            with db.transaction() as s:  # the pool recovers
                emit(s, TYPE, {"n": 2}, source="/reliability")
        assert bodies(direct) == [2] and states(direct) == 0
    finally:
        proxy.close()
