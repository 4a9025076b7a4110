"""Sent outbox rows are deleted once older than the retention, by the relay when it is idle;
unsent rows stay however old they are. On PostgreSQL and on SQLite."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select, update

from servicekit.db import Database, utcnow
from servicekit.outbox import emit
from servicekit.publishers import KombuPublisher
from servicekit.relay import Relay
from servicekit.tables import outbox
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


def _relay(db: Database, retention: timedelta | None) -> Relay:
    return Relay("retention", db, KombuPublisher("memory://", unique("retention")),
                 poll_interval=0.05, retention=retention)


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
