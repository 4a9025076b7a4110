"""The notifier (a plain pika consumer) when its database goes away for a moment, as in a
PostgreSQL restart: the SMS requests in flight wait and are sent once the database is back,
each once, and none ends in the dead-letter queue (requeued at once, each used up its
attempts in milliseconds). Real broker, real PostgreSQL behind a TCP proxy that cuts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from ecourt import registry
from servicekit import migrations
from servicekit.db import Database
from servicekit.envelope import CloudEvent
from servicekit.publishers import PikaPublisher
from servicekit.sealed import seal
from servicekit.testing import TcpProxy, pg_databases, unique, wait_for
from services.notifier.app import SERVICE
from services.notifier.models import SmsMessage
from services.notifier.pika_consumer import PikaSmsConsumer
from tests.reliability.helpers import (
    Workers,
    databases,
    declare_subscriptions,
    publish_events,
    queue_depth,
)

pytestmark = pytest.mark.real

SECRET = "test-secret"  # noqa: S105 - a test's own sealing key


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, message_id: str, phone: str, text: str) -> str:
        self.sent.append(message_id)
        return f"ref-{len(self.sent)}"


def _request(n: int) -> CloudEvent:
    return CloudEvent("delivery.sms.requested", "/delivery", {
        "account_id": f"a{n}", "phone_sealed": seal(f"1380013{n:04d}", SECRET),
        "template": "notice", "text_sealed": seal(f"第{n}号通知", SECRET)})


def _recorded(db: Database) -> int:
    """SMS rows committed (read past the proxy)."""
    with db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(SmsMessage)) or 0)


@pytest.fixture
def notifier_url(infrastructure: None) -> Iterator[str]:
    """A fresh database with the notifier's schema."""
    with pg_databases(["notifier"], prefix="ecourt_rel") as urls:
        migrations.upgrade(SERVICE.migrations, urls["notifier"])
        yield urls["notifier"]


def test_sms_requests_in_flight_wait_out_a_database_restart(notifier_url: str, vhost, exchange,
                                                            workers: Workers) -> None:  # type: ignore[no-untyped-def]
    sub = registry.subscription("notifier", unique("n") + ".")
    declare_subscriptions(vhost, exchange, sub)
    proxy = TcpProxy("127.0.0.1", 5432)
    provider = Recorder()
    try:
        proxied = notifier_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        with databases(proxied, notifier_url) as [db, check]:
            consumer = PikaSmsConsumer(db, provider, broker_url=vhost, queue=sub.queue,
                                       secret=SECRET, max_attempts=3)
            workers.start("notifier", consumer.run)
            wait_for(consumer.ready.is_set, message="the notifier")
            publisher = PikaPublisher(vhost, exchange)
            try:
                first = [_request(n) for n in range(5)]
                publish_events(publisher, "topic", "delivery.sms.requested", first)
                # committed, not only sent: a commit the cut breaks sends again, by design
                # (at-least-once with the same message id), and "once each" below would fail
                wait_for(lambda: _recorded(check) == 5, message="the first SMS")
                proxy.cut()
                rest = [_request(n) for n in range(5, 15)]
                publish_events(publisher, "topic", "delivery.sms.requested", rest)
                time.sleep(2.0)  # the notifier meets the dead line
                assert len(provider.sent) == 5
                proxy.heal()
            finally:
                publisher.close()
            wait_for(lambda: len(provider.sent) >= 15, timeout=60,
                     message="every SMS after the database is back")
            assert sorted(provider.sent) == sorted(e.id for e in first + rest)  # once each
            assert queue_depth(vhost, sub.dlq) == 0
            wait_for(lambda: _recorded(check) == 15, message="every SMS recorded")
    finally:
        proxy.heal()
        assert workers.stop() == []
        proxy.close()
