"""A two-phase handler's ``prepare`` (its calls to other services) runs before the consumer's
transaction: no pooled connection checked out, and on SQLite no write lock that the service's
other writers would wait for. A failing ``prepare`` is retried and dead-lettered as a failing
handler is; an event the inbox already holds is not prepared again. On the real databases,
with kombu's in-memory transport as the embedded suite runs it."""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ecourt import registry
from servicekit import migrations
from servicekit.consumer import ATTEMPT_HEADER, ERROR_HEADER, Handler, TwoPhaseHandler
from servicekit.db import Database
from servicekit.envelope import CloudEvent
from servicekit.tables import outbox
from servicekit.testing import InMemoryConsumer, pg_databases, transaction_open, wait_for

TYPE = "test.two_phase"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.real)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database with the kit's tables (delivery's schema)."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'kit.db'}"
        else:
            url = stack.enter_context(pg_databases(["kit"]))["kit"]
        migrations.upgrade(registry.get("delivery").migrations, url)
        database = Database(url)
        stack.callback(database.dispose)
        yield database


class Consuming(InMemoryConsumer):
    """A consumer of ``TYPE``; ``relay``: with a relay for its retries and dead letters."""

    def __init__(self, db: Database, handler: Handler, *, relay: bool = False,
                 max_attempts: int = 5) -> None:
        super().__init__("tp", db, {TYPE: handler}, relay=relay, max_attempts=max_attempts,
                         retry_base=0.01)

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead letters the consumer wrote: (event id, headers)."""
        with self.db.transaction(reads_only=True) as session:
            rows = session.execute(select(outbox.c.event_id, outbox.c.headers).where(
                outbox.c.routing_key == self.consumer.subscription.dlq)).all()
        return [{"event_id": r.event_id, **json.loads(r.headers)} for r in rows]


def test_prepare_runs_with_no_transaction_open_and_apply_inside_it(db: Database) -> None:
    """Failed before: there was no prepare phase; a handler's remote call ran in the
    transaction (``services/delivery/tests/test_lookups_before_transaction.py`` shows it)."""
    seen: dict[str, bool] = {}
    applied: list[Any] = []

    def prepare(event: CloudEvent) -> str:
        # another connection could take the write lock / no connection is checked out
        seen["prepare"] = transaction_open(db)
        return f"looked up for {event.data['n']}"

    def apply(_session: Session, event: CloudEvent, found: str) -> None:
        seen["apply"] = transaction_open(db)  # the probe does see a transaction
        applied.append((event.data["n"], found))

    event = CloudEvent(TYPE, "/test", {"n": 1})
    with Consuming(db, TwoPhaseHandler(prepare, apply)) as consuming:
        consuming.publish(event)
        # not ``handled()`` meanwhile: its own read would be a transaction the probe sees
        wait_for(lambda: applied, message="the event applied")
    assert event.id in consuming.handled()  # the consumer's exit lets the batch commit
    assert seen == {"prepare": False, "apply": True}
    assert applied == [(1, "looked up for 1")]


@pytest.mark.parametrize("where", ["prepare", "handler"])
def test_a_failing_prepare_is_retried_then_dead_lettered_as_a_failing_handler_is(
        db: Database, where: str) -> None:
    """The same attempts, the same dead letter, whether ``prepare`` or a plain handler
    raises; a neighbour in the same batch is handled once meanwhile."""
    calls: collections.Counter[str] = collections.Counter()
    poison, fine = (CloudEvent(TYPE, "/test", {"fail": fail}) for fail in (True, False))

    def prepare(event: CloudEvent) -> None:
        calls[f"prepare {event.id}"] += 1
        if event.data["fail"]:
            raise RuntimeError("identity is away")

    def apply(_session: Session, event: CloudEvent, _found: None) -> None:
        calls[f"apply {event.id}"] += 1

    def plain(session: Session, event: CloudEvent) -> None:
        prepare(event)
        apply(session, event, None)

    handler = TwoPhaseHandler(prepare, apply) if where == "prepare" else plain
    with Consuming(db, handler, relay=True, max_attempts=3) as consuming:
        consuming.publish(poison, fine)
        [letter] = wait_for(consuming.dead_letters, timeout=30,
                            message="the failing event dead-lettered")
        assert consuming.handled() == {fine.id}
    assert letter["event_id"] == poison.id and letter[ATTEMPT_HEADER] == 3
    assert letter[ERROR_HEADER] == "RuntimeError: identity is away"
    # one look-up per delivery: the careful path (one savepoint per event, after the batch's
    # transaction failed) reuses what ``prepare`` found, where a plain handler runs twice
    assert calls[f"prepare {poison.id}"] == (3 if where == "prepare" else 6)
    assert calls[f"apply {poison.id}"] == 0
    assert calls[f"apply {fine.id}"] == 1


def test_an_event_already_handled_is_not_prepared_again(db: Database) -> None:
    """A redelivery (here: published again, and twice in one batch) finds the event in the
    inbox before ``prepare``: no second look-up, no second apply."""
    calls: collections.Counter[str] = collections.Counter()

    def prepare(event: CloudEvent) -> None:
        calls[f"prepare {event.id}"] += 1

    def apply(_session: Session, event: CloudEvent, _found: None) -> None:
        calls[f"apply {event.id}"] += 1

    event, twice, last = (CloudEvent(TYPE, "/test", {"n": n}) for n in range(3))
    with Consuming(db, TwoPhaseHandler(prepare, apply)) as consuming:
        consuming.publish(event)
        wait_for(lambda: event.id in consuming.handled(), message="the event handled")
        consuming.publish(event, twice, twice, last)  # one queue, in order: last comes last
        wait_for(lambda: last.id in consuming.handled(), message="the last event handled")
    assert calls == {f"prepare {event.id}": 1, f"apply {event.id}": 1,
                     f"prepare {twice.id}": 1, f"apply {twice.id}": 1,
                     f"prepare {last.id}": 1, f"apply {last.id}": 1}


def test_called_as_a_plain_handler_it_runs_both_phases() -> None:
    """Harnesses and tools call handlers as ``handler(session, event)``."""
    got: list[tuple[Any, str]] = []
    handler = TwoPhaseHandler(lambda e: e.data["n"] * 2,
                              lambda s, _e, found: got.append((s, found)))
    session: Any = object()
    handler(session, CloudEvent(TYPE, "/test", {"n": 21}))
    assert got == [(session, 42)]
