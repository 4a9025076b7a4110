"""R4: a process dies at the worst moments of the outbox's life, and still there is no zombie
record (saved, never sent) and no ghost event (sent, never saved):

* just before the commit of a state change and its event: neither exists;
* just after the commit, before any relay ran: a relay started later publishes the row;
* just after the broker confirmed, before the row was marked sent: the row is published again
  and the consumer's inbox turns the second copy into a no-op.
"""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest
from sqlalchemy import event, func, select

from servicekit import migrations
from servicekit.db import Database
from servicekit.publishers import PikaPublisher
from servicekit.relay import Relay
from servicekit.tables import outbox
from servicekit.testing import pg_databases, wait_for
from servicekit.topology import Subscription
from services.identity import usecases
from services.identity.models import Account
from tests.reliability.helpers import (
    IDENTITY_MIGRATIONS,
    CountingConsumer,
    count,
    declare_subscriptions,
    inbox_ids,
    notifications,
    person,
    record_notification,
)

pytestmark = pytest.mark.real

REGISTERED = "identity.account.registered"
CLIENT = "127.0.0.1"  # the address a registration is counted against


class Crash(Exception):
    """The process dies here (a fault hook)."""


@pytest.fixture
def identity_url(infrastructure: None) -> Iterator[str]:
    with pg_databases(["identity"], prefix="ecourt_rel") as urls:
        migrations.upgrade(IDENTITY_MIGRATIONS, urls["identity"])
        yield urls["identity"]


def _accounts(db: Database) -> int:
    return count(db, select(func.count()).select_from(Account))


def _outbox_rows(db: Database) -> int:
    return count(db, select(func.count()).select_from(outbox))


def _take(url: str, queue: str) -> list[str]:
    """Take (and ack) every message of ``queue``; their message ids."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ids = []
    try:
        channel = conn.channel()
        for _ in range(100):
            method, props, _body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            ids.append(props.message_id)
    finally:
        conn.close()
    return ids


def test_crash_just_before_commit_leaves_neither_record_nor_event(identity_url) -> None:  # type: ignore[no-untyped-def]
    db = Database(identity_url)
    body = person()

    def crash(_session) -> None:  # type: ignore[no-untyped-def]
        raise Crash("killed just before COMMIT")

    try:
        event.listen(db.sessions, "before_commit", crash)
        try:
            with pytest.raises(Crash):
                usecases.register_individual(db, **body, client_ip=CLIENT)
        finally:
            event.remove(db.sessions, "before_commit", crash)
        assert _accounts(db) == 0, "zombie record: saved without its event"
        assert _outbox_rows(db) == 0, "ghost event: its state change was rolled back"

        # nothing half-written blocks the retry
        account = usecases.register_individual(db, **body, client_ip=CLIENT)
        assert _accounts(db) == 1 and _outbox_rows(db) == 1
        with db.transaction() as s:
            row = s.execute(select(outbox)).one()
        assert row.type == REGISTERED and account.id in row.body and row.sent_at is None
    finally:
        db.dispose()


def test_crash_after_commit_before_publish_is_published_by_a_later_relay(
        identity_url, vhost, exchange) -> None:  # type: ignore[no-untyped-def]
    sub = Subscription("rel_points", (REGISTERED,))
    declare_subscriptions(vhost, exchange, sub)
    db = Database(identity_url)
    account = usecases.register_individual(db, **person(), client_ip=CLIENT)
    db.dispose()  # the process dies: committed, never published

    restarted = Database(identity_url)
    publisher = PikaPublisher(vhost, exchange, confirm_timeout=5)
    try:
        with restarted.transaction() as s:
            [row] = s.execute(select(outbox)).all()
        assert row.sent_at is None and account.id in row.body
        relay = Relay("identity", restarted, publisher)
        assert relay.run_once() == 1
        with restarted.transaction() as s:
            assert s.scalar(select(outbox.c.sent_at)) is not None
        assert _take(vhost, sub.queue) == [row.event_id]
        assert relay.run_once() == 0  # sent once, not again
    finally:
        publisher.close()
        restarted.dispose()


class CrashAfterConfirm:
    """A publisher whose process dies right after the broker confirmed the batch."""

    def __init__(self, inner: PikaPublisher) -> None:
        self.inner = inner
        self.confirmed: list[int] = []

    def publish_batch(self, messages):  # type: ignore[no-untyped-def]
        result = self.inner.publish_batch(messages)
        self.confirmed.extend(result.confirmed)
        raise Crash("killed after the confirm, before marking the rows sent")

    def idle(self, seconds: float) -> None:
        self.inner.idle(seconds)

    def close(self) -> None:
        self.inner.close()


def test_crash_after_confirm_republishes_and_the_inbox_absorbs_it(
        identity_url, make_dbs, vhost, exchange, workers) -> None:  # type: ignore[no-untyped-def]
    [consumer_db] = make_dbs("points")
    sub = Subscription("rel_points", (REGISTERED,))
    declare_subscriptions(vhost, exchange, sub)
    db = Database(identity_url)
    first = PikaPublisher(vhost, exchange, confirm_timeout=5)
    second = PikaPublisher(vhost, exchange, confirm_timeout=5)
    try:
        usecases.register_individual(db, **person(), client_ip=CLIENT)
        crashing = CrashAfterConfirm(first)
        with pytest.raises(Crash):
            Relay("identity", db, crashing).run_once()
        assert len(crashing.confirmed) == 1  # the broker has it ...
        with db.transaction() as s:
            [row] = s.execute(select(outbox)).all()
        assert row.sent_at is None  # ... but the row was not marked sent: no loss possible

        assert Relay("identity", db, second).run_once() == 1  # the restarted relay
        with db.transaction() as s:
            assert s.scalar(select(outbox.c.sent_at)) is not None

        consumer = CountingConsumer(sub.service, consumer_db, {REGISTERED: record_notification},
                                    broker_url=vhost, exchange=exchange, subscription=sub)
        workers.start("consumer", consumer.run)
        wait_for(lambda: consumer.deliveries[row.event_id] >= 2, timeout=20,
                 message="both copies to reach the consumer")
        wait_for(lambda: inbox_ids(consumer_db, sub.service) == [row.event_id], timeout=20,
                 message="the event in the consumer's inbox")
        assert workers.stop() == []
        assert consumer.deliveries[row.event_id] == 2
        assert notifications(consumer_db) == (1, 1)  # one effect for two copies
    finally:
        first.close()
        second.close()
        db.dispose()
