"""A consumer whose batch fails with an error it did not expect (anything but a database it
cannot reach, which it retries in place) drops its broker connection and reconnects. The
messages it had read on the old connection come back from the broker; the ones still in its
hands from before must not be acked on the new connection — that failed and kept the consumer
reconnecting forever. And a connection lost under a handler is the database's fault, never
the event's. Real broker, real database."""

from __future__ import annotations

import pytest
import sqlalchemy.exc

from servicekit.testing import unique, wait_for
from servicekit.topology import Subscription
from tests.reliability.helpers import (
    CountingConsumer,
    Workers,
    declare_subscriptions,
    emit_many,
    inbox_ids,
    notifications,
    record_notification,
)

pytestmark = pytest.mark.real

TYPE = "reliability.recovery.happened"


class FailsOnce(CountingConsumer):
    """Its first batch fails as a connection lost in the middle of a rollback does."""

    failed = False

    def handle(self, parsed, stop):  # type: ignore[no-untyped-def]
        if not self.failed:
            self.failed = True
            raise RuntimeError("an error the consumer does not expect")
        return super().handle(parsed, stop)


def test_a_consumer_recovers_from_an_unexpected_error_and_handles_everything_once(
        make_dbs, vhost, exchange, workers: Workers) -> None:  # type: ignore[no-untyped-def]
    from servicekit.publishers import PikaPublisher
    from servicekit.relay import Relay

    producer, consumer_db = make_dbs("producer", "consumer")
    sub = Subscription(unique("rel_rec"), (TYPE,))
    declare_subscriptions(vhost, exchange, sub)
    ids = emit_many(producer, TYPE, 300)
    relay = Relay("producer", producer, PikaPublisher(vhost, exchange), poll_interval=0.05)
    while relay.run_once():  # all queued before the consumer starts: its first batch is full
        pass
    relay.publisher.close()
    consumer = FailsOnce(sub.service, consumer_db, {TYPE: record_notification},
                         broker_url=vhost, exchange=exchange, subscription=sub, batch_size=50)
    workers.start("consumer", consumer.run)
    wait_for(lambda: len(inbox_ids(consumer_db, sub.service)) >= len(ids), timeout=30,
             message="the consumer to handle every event after reconnecting")
    assert consumer.failed
    assert sorted(inbox_ids(consumer_db, sub.service)) == sorted(ids)
    assert notifications(consumer_db) == (len(ids), len(ids))


class LosesTheConnection:
    """A handler whose connection is lost under it twice (SQLAlchemy's ``InterfaceError``, as
    psycopg reports a connection closed mid-statement), then works."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def __call__(self, session, event) -> None:  # type: ignore[no-untyped-def]
        if self.failures > 0:
            self.failures -= 1
            raise sqlalchemy.exc.InterfaceError("INSERT ...", {}, Exception("connection lost"))
        record_notification(session, event)


def test_a_connection_lost_in_a_handler_charges_no_attempt_to_the_event(
        make_dbs, vhost, exchange, workers: Workers) -> None:  # type: ignore[no-untyped-def]
    """With one attempt allowed, an event charged for the outage would be dead-lettered at
    once (it was: only OperationalError counted as the database's fault)."""
    from servicekit import dlq
    from servicekit.publishers import PikaPublisher
    from servicekit.relay import Relay

    producer, consumer_db = make_dbs("producer", "consumer")
    sub = Subscription(unique("rel_lost"), (TYPE,))
    declare_subscriptions(vhost, exchange, sub)
    ids = emit_many(producer, TYPE, 20)
    relay = Relay("producer", producer, PikaPublisher(vhost, exchange), poll_interval=0.05)
    while relay.run_once():
        pass
    relay.publisher.close()
    handler = LosesTheConnection(failures=2)
    consumer = CountingConsumer(sub.service, consumer_db, {TYPE: handler}, broker_url=vhost,
                                exchange=exchange, subscription=sub, max_attempts=1)
    workers.start("consumer", consumer.run)
    wait_for(lambda: len(inbox_ids(consumer_db, sub.service)) >= len(ids), timeout=30,
             message="every event handled once the connection is back")
    assert handler.failures == 0
    assert sorted(inbox_ids(consumer_db, sub.service)) == sorted(ids)
    assert notifications(consumer_db) == (len(ids), len(ids))
    assert dlq.list_dead_letters(vhost, sub.dlq) == []
