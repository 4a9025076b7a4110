"""How many workers a consumer gets: the setting reaches it, and SQLite keeps one."""

from __future__ import annotations

from pathlib import Path

import pytest

from servicekit.config import Settings
from servicekit.consumer import EventConsumer
from servicekit.db import Database


def test_the_workers_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env("delivery").consumer_workers == 1
    monkeypatch.setenv("ECOURT_CONSUMER_WORKERS", "4")
    assert Settings.from_env("delivery").consumer_workers == 4


def test_sqlite_keeps_one_worker(tmp_path: Path) -> None:
    """SQLite takes one writer at a time: more workers would only wait for its lock."""
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        consumer = EventConsumer("delivery", db, {}, broker_url="memory://", exchange="x",
                                 workers=4)
        assert consumer.workers == 1
    finally:
        db.dispose()
