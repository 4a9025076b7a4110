"""Fixtures of the reliability tests: a fresh vhost, fresh service databases (the delivery
schema: outbox, inbox, idempotency keys and ``notifications``) and background threads, all
removed afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servicekit import migrations
from servicekit.db import Database
from servicekit.testing import pg_databases, rabbit_vhost, unique
from tests.reliability.helpers import DELIVERY_MIGRATIONS, Workers


@pytest.fixture
def vhost(infrastructure: None) -> Iterator[str]:
    """The AMQP URL of a vhost made for this test."""
    with rabbit_vhost("ecourt_rel") as url:
        yield url


@pytest.fixture
def exchange() -> str:
    return unique("rel.events")


@pytest.fixture
def make_dbs(infrastructure: None) -> Iterator[Callable[..., list[Database]]]:
    """``make_dbs("a", "b")``: fresh databases migrated to the delivery schema."""
    with contextlib.ExitStack() as stack:
        def make(*names: str) -> list[Database]:
            urls = stack.enter_context(pg_databases(list(names), prefix="ecourt_rel"))
            dbs = []
            for name in names:
                migrations.upgrade(DELIVERY_MIGRATIONS, urls[name])
                db = Database(urls[name])
                stack.callback(db.dispose)
                dbs.append(db)
            return dbs

        yield make


@pytest.fixture
def workers() -> Iterator[Workers]:
    w = Workers()
    yield w
    w.stop()


@pytest.fixture(params=["postgresql", "sqlite"])
def kit_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh delivery database, once on PostgreSQL and once on SQLite."""
    if request.param == "postgresql":
        [database] = request.getfixturevalue("make_dbs")("kit")
        yield database
        return
    url = f"sqlite:///{tmp_path / 'kit.db'}"
    migrations.upgrade(DELIVERY_MIGRATIONS, url)
    database = Database(url)
    try:
        yield database
    finally:
        database.dispose()
