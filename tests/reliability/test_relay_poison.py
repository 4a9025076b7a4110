"""A poison row at the head of the outbox does not stop a service's events.

A claim always starts with the oldest due row. A row the broker or the client cannot take (a
message id over AMQP's 255 bytes; properties larger than a frame, which makes RabbitMQ close
the connection with 501 FRAME_ERROR) used to fail its whole batch before anything was
confirmed, the batch rolled back untouched, and the next claim started with the same row: the
service's events stopped for ever. Now the row is refused with its own backoff (attempts
counted, a later ``available_at``) and the rows after it are published."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from servicekit.db import Database, utcnow
from servicekit.publishers import (
    BatchResult,
    KombuPublisher,
    Outgoing,
    PikaPublisher,
    PublishError,
)
from servicekit.relay import Relay
from servicekit.tables import outbox
from servicekit.testing import wait_for
from servicekit.topology import Subscription
from tests.reliability.helpers import declare_subscriptions, emit_many, queue_depth

pytestmark = pytest.mark.real

TYPE = "reliability.poison.happened"
#: 64 characters (the column's limit) of four UTF-8 bytes each: 256 bytes, one over AMQP's 255
LONG_ID = "\U0001d508" * 64


def _poison(db: Database, *, event_id: str = "poison-1", headers: dict[str, object] | None = None
            ) -> int:
    """Write a row straight into the outbox, older than every other row; returns its id."""
    now = utcnow() - timedelta(seconds=5)
    with db.transaction() as s:
        return s.execute(insert(outbox).values(
            event_id=event_id, type=TYPE, exchange="topic", routing_key=TYPE,
            body=json.dumps({"id": "poison", "type": TYPE}), headers=json.dumps(headers or {}),
            created_at=now, available_at=now, attempts=0).returning(outbox.c.id)).scalar_one()


def _row(db: Database, row_id: int):  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        return s.execute(select(outbox).where(outbox.c.id == row_id)).one()


def _sent(db: Database, event_ids: list[str]) -> bool:
    with db.transaction() as s:
        sent = s.scalars(select(outbox.c.event_id).where(outbox.c.sent_at.is_not(None))).all()
    return set(event_ids) <= set(sent)


class Unchecked(PikaPublisher):
    """A PikaPublisher that writes an oversized properties frame instead of refusing it, so
    the broker itself refuses it (the path of any poison the client cannot foresee, such as a
    body over the broker's ``max_message_size``)."""

    def _check_header(self, header: bytes, m: Outgoing, body_max: int) -> None:
        pass


def _publisher(kind: str, vhost: str, exchange: str):  # type: ignore[no-untyped-def]
    if kind == "pika":
        return PikaPublisher(vhost, exchange, confirm_timeout=5)
    if kind == "pika-unchecked":
        return Unchecked(vhost, exchange, confirm_timeout=5)
    return KombuPublisher(vhost, exchange, confirm_timeout=5)


@pytest.mark.parametrize(("kind", "poison"), [
    ("pika", "long-id"),
    ("kombu", "long-id"),
    ("pika", "huge-properties"),
    ("pika-unchecked", "huge-properties"),
    ("kombu", "huge-properties"),
])
def test_a_poison_row_at_the_head_is_refused_and_the_rows_after_it_flow(  # type: ignore[no-untyped-def]
        make_dbs, vhost, exchange, workers, kind, poison) -> None:
    [db] = make_dbs("poison")
    sub = Subscription("rel_poison", (TYPE,))
    declare_subscriptions(vhost, exchange, sub)
    if poison == "long-id":
        poison_id = _poison(db, event_id=LONG_ID)
    else:  # a properties frame of ~300 KB; frame_max is 128 KiB
        poison_id = _poison(db, headers={"x-ecourt-error": "e" * 300_000})
    good = emit_many(db, TYPE, 30)
    publisher = _publisher(kind, vhost, exchange)
    relay = Relay("poison", db, publisher, batch_size=10, poll_interval=0.05, max_backoff=0.5)
    workers.start("relay", relay.run)
    try:
        wait_for(lambda: _sent(db, good), timeout=30,
                 message="the rows after the poison row to be published")
        row = _row(db, poison_id)
        assert row.sent_at is None, "the poison row was marked sent"
        assert row.attempts >= 1
        assert row.available_at > row.created_at + timedelta(seconds=5)  # its own backoff
        assert row.last_error, "the refusal says why"

        # the relay keeps running: later events go out too
        later = emit_many(db, TYPE, 5)
        wait_for(lambda: _sent(db, later), timeout=15, message="later events to be published")
        assert [t.name for t in workers.threads if not t.is_alive()] == []
    finally:
        assert workers.stop() == []
    assert queue_depth(vhost, sub.queue) == len(good) + len(later)
    assert _row(db, poison_id).sent_at is None


def test_a_row_refused_alone_is_tried_again_after_its_backoff(  # type: ignore[no-untyped-def]
        make_dbs, vhost, exchange) -> None:
    [db] = make_dbs("poison_again")
    declare_subscriptions(vhost, exchange, Subscription("rel_poison_again", (TYPE,)))
    poison_id = _poison(db, headers={"x-ecourt-error": "e" * 300_000})
    emit_many(db, TYPE, 3)
    publisher = Unchecked(vhost, exchange, confirm_timeout=5)
    relay = Relay("poison", db, publisher, batch_size=10)
    try:
        with pytest.raises(Exception):  # noqa: B017,PT011 - the batch fails as a whole first
            relay.run_once()
        assert _row(db, poison_id).attempts == 0  # a failed batch is no refusal of a row
        assert relay.run_once() == 0  # then the head row alone: refused
        first = _row(db, poison_id)
        assert first.attempts == 1 and first.sent_at is None
        assert relay.run_once() == 3  # and the others flow at once, in one full batch
        with db.transaction() as s:  # due again: tried (alone after its batch fails) again
            s.execute(outbox.update().where(outbox.c.id == poison_id)
                      .values(available_at=utcnow() - timedelta(seconds=1)))
        with pytest.raises(Exception):  # noqa: B017,PT011
            relay.run_once()
        assert relay.run_once() == 0
        again = _row(db, poison_id)
        assert again.attempts == 2 and again.available_at > utcnow() + timedelta(seconds=1)
    finally:
        publisher.close()


class PoisonedBroker:
    """A publisher for which a batch holding the poison event fails as a whole, with nothing
    settled (the broker closed the channel before any confirm came back)."""

    preferred_batch = 50

    def __init__(self, poison: str, *, reachable: bool = True) -> None:
        self.poison = poison
        self.reachable = reachable
        self.batches: list[int] = []

    def publish_batch(self, messages):  # type: ignore[no-untyped-def]
        self.batches.append(len(messages))
        if not self.reachable:
            raise PublishError("connect failed: refused", unreachable=True)
        if any(m.event_id == self.poison for m in messages):
            raise PublishError("channel closed: (406) PRECONDITION_FAILED", suspect=True)
        return BatchResult([m.row_id for m in messages], {})

    def idle(self, seconds: float) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_poison_row_in_the_middle_is_narrowed_down_and_the_claims_grow_back(  # type: ignore[no-untyped-def]
        kit_db) -> None:
    before = emit_many(kit_db, TYPE, 37)
    poison = emit_many(kit_db, TYPE, 1)[0]
    after = emit_many(kit_db, TYPE, 100)
    broker = PoisonedBroker(poison)
    relay = Relay("poison", kit_db, broker, batch_size=50)
    for _ in range(40):
        with contextlib.suppress(PublishError):
            relay.run_once()
        if _sent(kit_db, before + after):
            break
    assert _sent(kit_db, before + after)
    with kit_db.transaction() as s:
        row = s.execute(select(outbox).where(outbox.c.event_id == poison)).one()
    assert row.sent_at is None and row.attempts == 1
    assert row.last_error.startswith("failed alone: PublishError")
    assert len(broker.batches) < 30  # narrowed down, not one row at a time
    assert relay._limit == 50 and broker.batches[-1] == 50  # back to full batches

    # an unreachable broker isolates nothing and refuses nothing
    with kit_db.transaction() as s:
        s.execute(outbox.update().where(outbox.c.event_id == poison)
                  .values(available_at=utcnow() - timedelta(seconds=1)))
    down = PoisonedBroker(poison, reachable=False)
    relay = Relay("poison", kit_db, down, batch_size=50)
    for _ in range(3):
        with pytest.raises(PublishError):
            relay.run_once()
    assert down.batches == [1, 1, 1] and relay._limit == 50
    with kit_db.transaction() as s:
        assert s.scalar(select(outbox.c.attempts).where(outbox.c.event_id == poison)) == 1
