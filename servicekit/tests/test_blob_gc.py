"""The blob store's garbage collector (``servicekit.blob_gc``), on SQLite and — marked
``real`` — PostgreSQL: what goes (old, unreferenced, leftovers of a dead ``put``), what stays
(referenced by any declared column, young, touched by a ``put`` meanwhile, outside the
layout), and the dry run. Ages are set with ``os.utime``; nothing sleeps."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from servicekit import blob_gc
from servicekit.blob_gc import collect
from servicekit.blobs import LocalBlobStore
from servicekit.config import ConfigError
from servicekit.db import Database
from servicekit.testing import pg_databases

HOUR = 3600.0
GRACE = 24 * HOUR
OLD = time.time() - 30 * 24 * HOUR  # a month ago

metadata = MetaData()
letters = Table("letters", metadata, Column("id", Integer, primary_key=True),
                Column("letter_sha256", String(64)))
scans = Table("scans", metadata, Column("id", Integer, primary_key=True),
              Column("front_sha256", String(64), nullable=True))
COLUMNS = ("letters.letter_sha256", "scans.front_sha256")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.real)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'gc.db'}")
        metadata.create_all(database.engine)
        yield database
        database.dispose()
        return
    with pg_databases(["blobgc"]) as urls:
        database = Database(urls["blobgc"])
        metadata.create_all(database.engine)
        yield database
        database.dispose()


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def aged(store: LocalBlobStore, data: bytes, when: float = OLD) -> str:
    sha = store.put(data)
    os.utime(store.path_of(sha), (when, when))
    return sha


def refer(db: Database, table: Table, column: str, sha: str | None) -> None:
    with db.transaction() as session:
        session.execute(insert(table).values({column: sha}))


def gc(store: LocalBlobStore, db: Database, **kwargs: object):  # type: ignore[no-untyped-def]
    return collect(store, db, metadata, COLUMNS, grace=GRACE, **kwargs)  # type: ignore[arg-type]


def test_old_garbage_goes_and_the_bytes_are_counted(store: LocalBlobStore,
                                                    db: Database) -> None:
    sha = aged(store, b"a refused licence" * 10)
    report = gc(store, db)
    assert not store.path_of(sha).exists()
    assert (report.removed, report.bytes_freed) == (1, 170)


def test_a_blob_any_declared_column_refers_to_stays_however_old(store: LocalBlobStore,
                                                               db: Database) -> None:
    letter, front = aged(store, b"letter"), aged(store, b"front of an id card")
    refer(db, letters, "letter_sha256", letter)
    refer(db, scans, "front_sha256", front)
    refer(db, scans, "front_sha256", None)  # a NULL refers to nothing and breaks nothing
    report = gc(store, db)
    assert store.get(letter) == b"letter" and store.get(front) == b"front of an id card"
    assert (report.removed, report.kept_referenced) == (0, 2)


def test_a_young_unreferenced_blob_stays(store: LocalBlobStore, db: Database) -> None:
    sha = aged(store, b"uploaded a minute ago", time.time() - 60)
    just_inside = aged(store, b"almost old", time.time() - GRACE + HOUR)
    report = gc(store, db)
    assert store.path_of(sha).exists() and store.path_of(just_inside).exists()
    assert (report.removed, report.kept_young) == (0, 2)


def test_a_put_of_stored_bytes_refreshes_the_mtime_and_the_blob_survives(
        store: LocalBlobStore, db: Database) -> None:
    sha = aged(store, b"the same licence again")
    assert store.put(b"the same licence again") == sha  # a request in flight reuses it
    assert store.path_of(sha).stat().st_mtime > time.time() - HOUR
    gc(store, db)
    assert store.get(sha) == b"the same licence again"


def test_a_put_between_the_look_and_the_unlink_keeps_the_blob(
        store: LocalBlobStore, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector saw it old and unreferenced; a request re-puts it right then."""
    sha = aged(store, b"reused while collected")
    real_rename = os.rename

    def put_first(src: str | Path, dst: str | Path) -> None:
        store.put(b"reused while collected")  # touches the file just before it is set aside
        real_rename(src, dst)

    monkeypatch.setattr(blob_gc.os, "rename", put_first)
    report = gc(store, db)
    assert store.get(sha) == b"reused while collected"
    assert (report.removed, report.kept_touched) == (0, 1)
    assert sorted(p.name for p in store.path_of(sha).parent.iterdir()) == [sha]


def test_a_put_after_the_file_is_set_aside_writes_it_again(
        store: LocalBlobStore, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = aged(store, b"put while aside")
    real_rename = os.rename

    def put_after(src: str | Path, dst: str | Path) -> None:
        real_rename(src, dst)
        store.put(b"put while aside")  # finds no file: writes a new one

    monkeypatch.setattr(blob_gc.os, "rename", put_after)
    gc(store, db)
    assert store.get(sha) == b"put while aside"


def test_a_file_a_dead_collector_set_aside_is_put_back(store: LocalBlobStore,
                                                       db: Database) -> None:
    sha = aged(store, b"referenced, set aside by a collector that died")
    refer(db, letters, "letter_sha256", sha)
    path = store.path_of(sha)
    os.rename(path, path.with_name(blob_gc.ASIDE_PREFIX + sha))
    report = gc(store, db)
    assert store.get(sha) == b"referenced, set aside by a collector that died"
    assert report.restored == 1


def test_leftovers_of_a_dead_put_older_than_the_grace_go(store: LocalBlobStore,
                                                         db: Database) -> None:
    folder = store.root / "ab"
    folder.mkdir()
    old_tmp, young_tmp = folder / ".tmp-dead", folder / ".tmp-writing"
    old_tmp.write_bytes(b"half a file")
    young_tmp.write_bytes(b"being written")
    os.utime(old_tmp, (OLD, OLD))
    report = gc(store, db)
    assert not old_tmp.exists() and young_tmp.exists()
    assert (report.temporaries_removed, report.bytes_freed) == (1, 11)


def test_nothing_outside_the_layout_is_touched_and_links_are_not_followed(
        store: LocalBlobStore, db: Database, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / ("c" * 64)
    victim.write_bytes(b"not the store's")
    os.utime(victim, (OLD, OLD))
    (store.root / "cc").symlink_to(outside, target_is_directory=True)  # a linked folder
    folder = store.root / "dd"
    folder.mkdir()
    link = folder / ("d" * 64)
    link.symlink_to(victim)  # a linked blob
    os.utime(link, (OLD, OLD), follow_symlinks=False)
    stray = {store.root / ("e" * 64): b"not in a fan-out folder",
             folder / ("f" * 64): b"in the wrong fan-out folder",
             folder / "notes.txt": b"someone's notes",
             store.root / "zz" / ("a" * 64): b"folder not hex"}
    for path, data in stray.items():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (OLD, OLD))
    report = gc(store, db)
    assert victim.read_bytes() == b"not the store's" and link.is_symlink()
    assert all(path.read_bytes() == data for path, data in stray.items())
    assert (report.removed, report.examined) == (0, 0)


def test_a_dry_run_deletes_nothing_and_counts_what_would_go(store: LocalBlobStore,
                                                            db: Database) -> None:
    sha = aged(store, b"garbage")
    tmp = store.path_of(sha).parent / ".tmp-dead"
    tmp.write_bytes(b"x")
    os.utime(tmp, (OLD, OLD))
    report = gc(store, db, dry_run=True)
    assert store.get(sha) == b"garbage" and tmp.exists()
    assert (report.removed, report.temporaries_removed, report.bytes_freed) == (1, 1, 8)
    assert report.line().startswith("would remove 1 unreferenced blob(s)")


def test_the_log_line_names_no_blob(store: LocalBlobStore, db: Database,
                                    caplog: pytest.LogCaptureFixture) -> None:
    sha = aged(store, b"someone's id card")
    with caplog.at_level(logging.INFO, logger="servicekit.blob_gc"):
        gc(store, db)
    assert "removed 1 unreferenced blob(s)" in caplog.text
    assert sha not in caplog.text and sha[:12] not in caplog.text


@pytest.mark.parametrize(("value", "hours"), [("", 24.0), ("1", 1.0), ("36.5", 36.5)])
def test_the_grace_setting(monkeypatch: pytest.MonkeyPatch, value: str, hours: float) -> None:
    monkeypatch.setenv(blob_gc.GRACE_ENV, value)
    assert blob_gc.grace_seconds() == hours * HOUR


@pytest.mark.parametrize("value", ["0.5", "0", "-3", "a day"])
def test_a_grace_under_an_hour_or_not_a_number_is_a_config_error(
        monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(blob_gc.GRACE_ENV, value)
    with pytest.raises(ConfigError, match=blob_gc.GRACE_ENV):
        blob_gc.grace_seconds()
