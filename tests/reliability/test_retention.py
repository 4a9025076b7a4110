"""The kit tables keep their retention (``servicekit.retention``), enforced by the relay when
it is idle: sent outbox rows, inbox entries and idempotency keys past their age are deleted;
unsent outbox rows stay however old they are. On PostgreSQL and on SQLite."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import func, insert, select, update

from servicekit.db import Database, utcnow
from servicekit.outbox import emit
from servicekit.publishers import KombuPublisher
from servicekit.relay import Relay
from servicekit.retention import KEEP_ALL, Retention
from servicekit.tables import idempotency_keys, inbox, outbox
from servicekit.testing import unique, wait_for

TYPE = "reliability.retention.happened"
WEEK = timedelta(days=7)


def _rows(db: Database, n: int) -> list[str]:
    with db.transaction() as s:
        return [emit(s, TYPE, {"n": i}, source="/reliability").id for i in range(n)]


def _sent(db: Database, event_ids: list[str], days_ago: float) -> None:
    with db.transaction() as s:
        s.execute(update(outbox).where(outbox.c.event_id.in_(event_ids))
                  .values(sent_at=utcnow() - timedelta(days=days_ago)))


def _left(db: Database) -> set[str]:
    with db.transaction() as s:
        return set(s.scalars(select(outbox.c.event_id)))


def _relay(db: Database, retention: timedelta | None, **others: timedelta | None) -> Relay:
    """A relay keeping sent outbox rows ``retention`` long (and the others as given)."""
    policy = Retention(outbox=retention, **{"inbox": None, "idempotency_keys": None, **others})
    return Relay("retention", db, KombuPublisher("memory://", unique("retention")),
                 poll_interval=0.05, retention=policy)


def test_prune_deletes_only_rows_sent_before_the_retention(kit_db: Database) -> None:
    old, recent, unsent = _rows(kit_db, 7), _rows(kit_db, 2), _rows(kit_db, 3)
    _sent(kit_db, old, days_ago=10)
    _sent(kit_db, recent, days_ago=1)
    with kit_db.transaction() as s:  # an unsent row written long ago stays
        s.execute(update(outbox).where(outbox.c.event_id == unsent[0])
                  .values(created_at=utcnow() - timedelta(days=30)))

    assert _relay(kit_db, WEEK).prune(chunk=3) == 7  # three rounds of at most 3 rows
    assert _left(kit_db) == set(recent) | set(unsent)


def test_no_retention_keeps_every_sent_row(kit_db: Database) -> None:
    old = _rows(kit_db, 4)
    _sent(kit_db, old, days_ago=400)
    assert _relay(kit_db, None).prune() == 0
    assert _left(kit_db) == set(old)


def _inbox_entries(db: Database, days_ago: dict[str, float]) -> None:
    with db.transaction() as s:
        for event_id, age in days_ago.items():
            s.execute(insert(inbox).values(consumer="c", event_id=event_id, type=TYPE,
                                           received_at=utcnow() - timedelta(days=age)))


def _keys(db: Database, hours_ago: dict[str, float]) -> None:
    with db.transaction() as s:
        for key, age in hours_ago.items():
            s.execute(insert(idempotency_keys).values(
                key=key, principal="p", method="POST", path="/x", request_hash="h" * 64,
                status=201, headers="{}", body=b"{}",
                created_at=utcnow() - timedelta(hours=age)))


def _ids(db: Database, column) -> set[str]:  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        return set(s.scalars(select(column)))


def test_inbox_entries_and_idempotency_keys_go_after_their_own_retention(
        kit_db: Database) -> None:
    _inbox_entries(kit_db, {"e-old": 31, "e-older": 90, "e-new": 29})
    _keys(kit_db, {"k-old": 25, "k-new": 23})
    old_sent, new_sent = _rows(kit_db, 1), _rows(kit_db, 1)
    _sent(kit_db, old_sent, days_ago=8)
    _sent(kit_db, new_sent, days_ago=6)

    relay = _relay(kit_db, WEEK, inbox=timedelta(days=30),
                   idempotency_keys=timedelta(hours=24))
    assert relay.prune(chunk=1) == 1 + 2 + 1  # one row per chunk: every chunk loops
    assert _ids(kit_db, inbox.c.event_id) == {"e-new"}
    assert _ids(kit_db, idempotency_keys.c.key) == {"k-new"}
    assert _left(kit_db) == set(new_sent)


def test_keep_all_deletes_nothing(kit_db: Database) -> None:
    _inbox_entries(kit_db, {"e": 4000})
    _keys(kit_db, {"k": 100_000})
    relay = Relay("retention", kit_db, KombuPublisher("memory://", unique("retention")),
                  retention=KEEP_ALL)
    assert relay.prune() == 0
    with kit_db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(inbox)) == 1
        assert s.scalar(select(func.count()).select_from(idempotency_keys)) == 1


def test_the_relay_prunes_when_it_has_nothing_to_publish(kit_db: Database) -> None:
    old, recent = _rows(kit_db, 5), _rows(kit_db, 2)
    _sent(kit_db, old, days_ago=8)
    _sent(kit_db, recent, days_ago=6)
    relay = _relay(kit_db, WEEK)
    stop = threading.Event()
    runner = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: _left(kit_db) == set(recent), timeout=15,
                 message="the relay to prune the rows sent eight days ago")
    finally:
        stop.set()
        runner.join(10)


def test_an_idle_relay_works_off_a_long_backlog_a_little_at_a_time(kit_db: Database) -> None:
    _sent(kit_db, _rows(kit_db, 7), days_ago=30)
    relay = _relay(kit_db, WEEK)
    assert relay.prune(chunk=2, max_chunks=2) == 4  # bounded: two chunks of two
    assert len(_left(kit_db)) == 3

    relay._prune_now_and_then(chunk=2, max_chunks=1)  # a full chunk: due again at once
    assert len(_left(kit_db)) == 1
    relay._prune_now_and_then(chunk=2, max_chunks=1)  # the rest: now done for a while
    assert _left(kit_db) == set()

    later = _rows(kit_db, 2)
    _sent(kit_db, later, days_ago=30)
    relay._prune_now_and_then(chunk=2, max_chunks=1)  # within prune_every: nothing
    assert _left(kit_db) == set(later)
