"""R2: an event nobody is bound to is reported as a failure, never silently marked sent."""

from __future__ import annotations

import json

import pytest
from kombu import Connection
from sqlalchemy import insert, select

from servicekit.db import utcnow
from servicekit.publishers import QUEUE, KombuPublisher, PikaPublisher
from servicekit.relay import Relay
from servicekit.tables import outbox
from servicekit.testing import unique
from servicekit.topology import Subscription
from tests.reliability.helpers import declare_subscriptions, emit_many, queue_depth

pytestmark = pytest.mark.real

BOUND = "reliability.bound.happened"
NOBODY = "reliability.nobody.listens"


def _rows(db):  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        return {r.type: r for r in s.execute(select(outbox))}


@pytest.mark.parametrize("kind", ["pika", "kombu"])
def test_unroutable_event_is_a_failure_and_stays_in_the_outbox(make_dbs, vhost, exchange,
                                                                kind) -> None:  # type: ignore[no-untyped-def]
    [db] = make_dbs("unroutable")
    sub = Subscription("rel_bound", (BOUND,))
    declare_subscriptions(vhost, exchange, sub)
    emit_many(db, NOBODY, 1)
    emit_many(db, BOUND, 1)
    publisher = (PikaPublisher(vhost, exchange, confirm_timeout=5) if kind == "pika"
                 else KombuPublisher(vhost, exchange, confirm_timeout=5))
    relay = Relay("unroutable", db, publisher)
    try:
        assert relay.run_once() == 1  # only the bound event counts as published
        rows = _rows(db)
        lost = rows[NOBODY]
        assert lost.sent_at is None, "an unroutable event was marked sent"
        assert lost.attempts >= 1
        assert (lost.last_error or "").startswith("unroutable"), lost.last_error
        assert lost.available_at > lost.created_at  # backs off, does not hot-loop
        assert rows[BOUND].sent_at is not None and rows[BOUND].last_error is None
        assert queue_depth(vhost, sub.queue) == 1

        # tried again later: still a failure, the attempts go up, still never sent
        with db.transaction() as s:
            s.execute(outbox.update().where(outbox.c.type == NOBODY)
                      .values(available_at=lost.created_at))
        assert relay.run_once() == 0
        again = _rows(db)[NOBODY]
        assert again.sent_at is None
        assert again.attempts == lost.attempts + 1
        assert (again.last_error or "").startswith("unroutable")
    finally:
        publisher.close()


def _memory_depth(queue: str) -> int:
    with Connection("memory://") as conn:
        return conn.default_channel.queue_declare(queue, passive=True).message_count


def _queued(db, type_: str, queue: str) -> None:  # type: ignore[no-untyped-def]
    """A row for one queue by name (as a delayed retry or a dead letter is written)."""
    now = utcnow()
    with db.transaction() as s:
        s.execute(insert(outbox).values(
            event_id=unique("q"), type=type_, exchange=QUEUE, routing_key=queue,
            body=json.dumps({"type": type_}), headers="{}", created_at=now, available_at=now,
            attempts=0))


def test_unroutable_event_on_the_memory_transport_is_a_failure_too(kit_db) -> None:  # type: ignore[no-untyped-def]
    """The embedded tier: kombu's memory transport has no ``mandatory`` and no returns, so the
    publisher looks the bindings up itself; an event nobody is bound to is not marked sent."""
    exchange = unique("rel.events")
    sub = Subscription(unique("rel_bound_mem"), (BOUND,))
    declare_subscriptions("memory://", exchange, sub)
    emit_many(kit_db, NOBODY, 1)
    emit_many(kit_db, BOUND, 1)
    _queued(kit_db, "reliability.queued.missing", unique("no_such_queue"))
    _queued(kit_db, "reliability.queued.present", sub.queue)
    publisher = KombuPublisher("memory://", exchange)
    relay = Relay("unroutable", kit_db, publisher)
    try:
        assert relay.run_once() == 2  # the bound event and the row for an existing queue
        rows = _rows(kit_db)
        for type_ in (NOBODY, "reliability.queued.missing"):
            lost = rows[type_]
            assert lost.sent_at is None, f"an unroutable {type_} was marked sent"
            assert lost.attempts == 1
            assert (lost.last_error or "").startswith("unroutable"), lost.last_error
            assert lost.available_at > lost.created_at
        for type_ in (BOUND, "reliability.queued.present"):
            assert rows[type_].sent_at is not None and rows[type_].last_error is None
        assert _memory_depth(sub.queue) == 2

        with kit_db.transaction() as s:  # due again: still a failure, never sent
            s.execute(outbox.update().where(outbox.c.type == NOBODY)
                      .values(available_at=rows[NOBODY].created_at))
        assert relay.run_once() == 0
        again = _rows(kit_db)[NOBODY]
        assert again.sent_at is None and again.attempts == 2

        # bound later (a consumer declared its queue): the event goes out
        late = Subscription(unique("rel_late_mem"), (NOBODY,))
        declare_subscriptions("memory://", exchange, late)
        with kit_db.transaction() as s:
            s.execute(outbox.update().where(outbox.c.type == NOBODY)
                      .values(available_at=rows[NOBODY].created_at))
        assert relay.run_once() == 1
        assert _rows(kit_db)[NOBODY].sent_at is not None
        assert _memory_depth(late.queue) == 1
    finally:
        publisher.close()
