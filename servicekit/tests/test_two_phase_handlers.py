"""A two-phase handler's ``prepare`` (its calls to other services) runs before the consumer's
transaction: no pooled connection checked out, and on SQLite no write lock that the service's
other writers would wait for. A failing ``prepare`` is retried and dead-lettered as a failing
handler is; an event the inbox already holds is not prepared again. The ``prepare`` of a batch's
events run at once, within the consumer's bound, and their contexts reach ``apply`` in the
batch's order. On the real databases, with kombu's in-memory transport as the embedded suite runs
it.

Overlap is shown by behaviour, never by the clock: a ``threading.Barrier(n)`` passes only when n
calls wait in it at once, and breaks (failing the call, so the test) after its timeout."""

from __future__ import annotations

import collections
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ecourt import registry
from servicekit import consumer as consumers
from servicekit import migrations
from servicekit.config import ConfigError
from servicekit.consumer import (
    ATTEMPT_HEADER,
    ERROR_HEADER,
    EventConsumer,
    Handler,
    TwoPhaseHandler,
)
from servicekit.db import Database
from servicekit.envelope import CloudEvent
from servicekit.tables import outbox
from servicekit.testing import InMemoryConsumer, pg_databases, transaction_open, wait_for
from servicekit.topology import declare

TYPE = "test.two_phase"
#: the setting, by the name README documents (the consumer reads it when it is made)
PREPARE_THREADS = "ECOURT_CONSUMER_PREPARE_THREADS"
#: how long a barrier waits for its parties before it breaks (and the test fails)
BARRIER_TIMEOUT = 10


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

    def queued(self, *events: CloudEvent) -> Consuming:
        """``events`` waiting in the queue before the consumer starts: its first read takes
        them all, one batch."""
        from kombu import Connection

        with Connection("memory://") as conn:
            declare(conn, self.exchange, [self.consumer.subscription])
        self.publish(*events)
        return self

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead letters the consumer wrote: (event id, headers)."""
        return self._written(self.consumer.subscription.dlq)

    def retries(self) -> list[dict[str, Any]]:
        """The retries the consumer wrote (not published: no relay): (event id, headers)."""
        return self._written(self.consumer.subscription.queue)

    def _written(self, routing_key: str) -> list[dict[str, Any]]:
        with self.db.transaction(reads_only=True) as session:
            rows = session.execute(select(outbox.c.event_id, outbox.c.headers).where(
                outbox.c.routing_key == routing_key)).all()
        return [{"event_id": r.event_id, **json.loads(r.headers)} for r in rows]


class Overlap:
    """Calls that must run ``parties`` at once: each waits in a barrier of ``parties``. Counts
    how many run at once (the most, for a bound) and keeps each call's exception (a broken
    barrier: they did not overlap), so a test fails on it at once rather than on a timeout."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=BARRIER_TIMEOUT)
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.errors: list[BaseException] = []

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.barrier.wait()
            yield
        except BaseException as exc:
            self.errors.append(exc)
            raise
        finally:
            with self.lock:
                self.running -= 1


def _events(n: int, **data: Any) -> list[CloudEvent]:
    return [CloudEvent(TYPE, "/test", {"n": i, **data}) for i in range(n)]


def test_probes_made_at_once_do_not_see_each_other_as_a_transaction(db: Database) -> None:
    """``transaction_open`` is asked from several threads at once when a consumer's look-ups
    run concurrently; one probe (on SQLite an instant of the write lock, on PostgreSQL its own
    query) was seen by another as the database's transaction."""
    rounds, threads = 20, 8
    start = threading.Barrier(threads, timeout=10)
    seen: list[bool] = []

    def probe() -> None:
        for _ in range(rounds):
            start.wait()
            seen.append(transaction_open(db))

    workers = [threading.Thread(target=probe) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert len(seen) == rounds * threads and not any(seen), seen.count(True)
    with db.transaction() as session:  # and a real one is still seen
        session.execute(text("SELECT 1"))
        assert transaction_open(db)


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


def test_the_prepares_of_a_batch_run_at_once_and_apply_takes_them_in_the_batchs_order(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed before: the prepares ran one after the other, so the first waited in the barrier
    alone until it broke. Here they meet in it, then end last first; ``apply`` still sees
    the batch's order, in one transaction."""
    monkeypatch.setenv(PREPARE_THREADS, "4")
    events = _events(4)
    overlap = Overlap(len(events))
    ended: list[threading.Event] = [threading.Event() for _ in events]
    order: list[int] = []
    applied: list[tuple[int, str]] = []

    def prepare(event: CloudEvent) -> str:
        n = event.data["n"]
        with overlap.call():
            if n + 1 < len(events):  # each ends after the next one: the last first
                assert ended[n + 1].wait(BARRIER_TIMEOUT), "the next prepare did not end"
            order.append(n)
            ended[n].set()
        return f"found {n}"

    def apply(_session: Session, event: CloudEvent, found: str) -> None:
        applied.append((event.data["n"], found))

    with Consuming(db, TwoPhaseHandler(prepare, apply)).queued(*events) as consuming:
        wait_for(lambda: overlap.errors or len(applied) == len(events), timeout=30,
                 message="the batch applied")
        assert overlap.errors == []
        wait_for(lambda: consuming.handled() == {e.id for e in events},
                 message="the batch committed")
    assert order == [3, 2, 1, 0]
    assert applied == [(n, f"found {n}") for n in range(4)]


def test_a_failing_prepare_fails_its_own_event_alone(db: Database,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Prepared at once with its neighbours, the failing event is the only one retried (with
    its error); the others are applied once (the failing one comes first: the batch's first
    transaction fails before applying anything). Failed before: the prepares never met in
    the barrier, and all three failed."""
    monkeypatch.setenv(PREPARE_THREADS, "3")
    poison, first, last = events = [CloudEvent(TYPE, "/test", {"fail": n == 0})
                                    for n in range(3)]
    overlap = Overlap(len(events))
    applied: list[str] = []

    def prepare(event: CloudEvent) -> None:
        with overlap.call():
            pass
        if event.data["fail"]:
            raise RuntimeError("identity is away")

    def apply(_session: Session, event: CloudEvent, _found: None) -> None:
        applied.append(event.id)

    with Consuming(db, TwoPhaseHandler(prepare, apply)).queued(*events) as consuming:
        [retry] = wait_for(lambda: overlap.errors or consuming.retries(), timeout=30,
                           message="the failing event retried")
        assert overlap.errors == []
        wait_for(lambda: consuming.handled() == {first.id, last.id},
                 message="the neighbours handled")
    assert retry["event_id"] == poison.id and retry[ATTEMPT_HEADER] == 2
    assert retry[ERROR_HEADER] == "RuntimeError: identity is away"
    assert applied == [first.id, last.id]


def test_no_more_prepares_run_at_once_than_the_consumer_has_prepare_threads(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Six events, two prepare threads: two at once (the barrier of two passes three times),
    never three. Failed before: one at a time, the first barrier broke."""
    monkeypatch.setenv(PREPARE_THREADS, "2")
    events = _events(6)
    overlap = Overlap(2)
    applied: list[int] = []

    def prepare(_event: CloudEvent) -> None:
        with overlap.call():
            pass

    def apply(_session: Session, event: CloudEvent, _found: None) -> None:
        applied.append(event.data["n"])

    with Consuming(db, TwoPhaseHandler(prepare, apply)).queued(*events) as consuming:
        wait_for(lambda: overlap.errors or len(applied) == len(events), timeout=30,
                 message="the batch applied")
        assert overlap.errors == []
        assert consuming.consumer.prepare_threads == 2
    assert overlap.most == 2
    assert applied == list(range(6))


def test_the_calls_a_prepare_makes_concurrently_share_the_bound_even_nested(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``prepare`` that makes its look-ups ``concurrently`` (delivery: both halves of a
    combined handler, each asking for several recipients): they run two at once on two
    prepare threads, never more, the nested ones too, with no deadlock; the results keep
    their order. Called plainly, outside a consumer, the same calls run in turn."""
    monkeypatch.setenv(PREPARE_THREADS, "2")
    overlap = Overlap(2)
    applied: list[list[list[str]]] = []

    def look_up(name: str) -> str:
        with overlap.call():
            return name.upper()

    def prepare(_event: CloudEvent) -> list[list[str]]:
        return consumers.concurrently(lambda group: consumers.concurrently(look_up, group),
                                      [["a", "b"], ["c", "d"]])

    def apply(_session: Session, _event: CloudEvent, found: list[list[str]]) -> None:
        applied.append(found)

    with Consuming(db, TwoPhaseHandler(prepare, apply)).queued(*_events(1)):
        wait_for(lambda: overlap.errors or applied, timeout=30, message="the event applied")
    assert overlap.errors == []
    assert overlap.most == 2
    assert applied == [[["A", "B"], ["C", "D"]]]
    assert consumers.concurrently(str.upper, ["x", "y"]) == ["X", "Y"]  # no consumer: in turn


@pytest.mark.parametrize("value", ["0", "many", "2.5"])
def test_a_bad_prepare_threads_setting_stops_the_consumer_at_its_start(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str) -> None:
    """As every other setting: a ConfigError naming it (the CLI exits 2 with its message),
    raised where the consumer is made, before it connects to anything."""
    monkeypatch.setenv(PREPARE_THREADS, value)
    db = Database(f"sqlite:///{tmp_path / 'kit.db'}")
    try:
        with pytest.raises(ConfigError, match=PREPARE_THREADS):
            EventConsumer("tp", db, {}, broker_url="memory://", exchange="x")
        monkeypatch.delenv(PREPARE_THREADS)
        assert EventConsumer("tp", db, {}, broker_url="memory://",
                             exchange="x").prepare_threads == consumers.DEFAULT_PREPARE_THREADS
    finally:
        db.dispose()
