"""``Database.transaction(reads_only=True)``: on SQLite a long reading transaction (an export
streamed to a slow client) takes no write lock, while an ordinary transaction still takes it
at BEGIN (so the embedded suite's writers queue instead of failing on a lock upgrade); on
PostgreSQL it reads one snapshot and can write nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from servicekit.db import Database
from servicekit.testing import pg_databases


def _writer(db: Database, done: list[str]) -> threading.Thread:
    def write() -> None:
        with db.transaction() as session:
            session.execute(text("INSERT INTO t (v) VALUES ('w')"))
        done.append("written")

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_a_reading_transaction_holds_up_no_writer_an_ordinary_one_does(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/k.db")
    try:
        with db.transaction() as session:
            session.execute(text("CREATE TABLE t (v TEXT)"))
            session.execute(text("INSERT INTO t (v) VALUES ('a')"))

        done: list[str] = []
        with db.transaction(reads_only=True) as reader:
            assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 1
            writer = _writer(db, done)
            writer.join(timeout=10)
            assert done == ["written"]
            # its snapshot is the one it began with (WAL)
            assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 1

        done.clear()
        with db.transaction() as holder:
            holder.execute(text("SELECT count(*) FROM t"))
            writer = _writer(db, done)
            writer.join(timeout=0.5)
            assert done == []  # waits for the write lock the holder took at BEGIN
        writer.join(timeout=30)
        assert done == ["written"]
    finally:
        db.dispose()


@pytest.mark.real
def test_on_postgresql_a_reading_transaction_is_one_snapshot_and_writes_nothing() -> None:
    """An ordinary transaction's statements each see what committed before them (READ
    COMMITTED): a count and the page after it can disagree. A reading one sees one snapshot."""
    with pg_databases(["reads"]) as urls:
        db = Database(urls["reads"])
        try:
            with db.transaction() as session:
                session.execute(text("CREATE TABLE t (v TEXT)"))
                session.execute(text("INSERT INTO t (v) VALUES ('a')"))
            seen: dict[bool, list[int]] = {}
            for reads_only in (False, True):
                with db.transaction(reads_only=reads_only) as reader:
                    before = reader.execute(text("SELECT count(*) FROM t")).scalar_one()
                    with db.transaction() as writer:  # another request commits meanwhile
                        writer.execute(text("INSERT INTO t (v) VALUES ('w')"))
                    after = reader.execute(text("SELECT count(*) FROM t")).scalar_one()
                seen[reads_only] = [before, after]
            assert seen == {False: [1, 2], True: [2, 2]}
            with pytest.raises(DBAPIError, match="read-only transaction"), \
                    db.transaction(reads_only=True) as reader:
                reader.execute(text("INSERT INTO t (v) VALUES ('x')"))
        finally:
            db.dispose()


def test_only_a_transaction_that_may_write_wakes_the_relay(tmp_path: Path) -> None:
    """The relay is woken after each commit to look for outbox rows; every route that only
    reads now commits a reading transaction, which cannot have added one: it wakes nobody."""
    db = Database(f"sqlite:///{tmp_path}/wake.db")
    woken: list[str] = []
    db.on_commit(lambda: woken.append("woken"))
    try:
        with db.transaction(reads_only=True) as session:
            session.execute(text("SELECT 1"))
        assert woken == []
        with db.transaction() as session:
            session.execute(text("SELECT 1"))
        assert woken == ["woken"]
    finally:
        db.dispose()
