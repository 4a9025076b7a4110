"""Two notifiers handling one SMS request at once, on PostgreSQL (the inbox's primary key
decides here; SQLite takes its one write lock at BEGIN and cannot race).

RabbitMQ gives a message to a second consumer when the first one's connection drops, and the
first may still be sending it, its inbox row written but not yet committed. The second looked
in the inbox, found nothing, and its own inbox row waited on the first's; when the first
committed, the primary key refused it and the SMS it had just seen sent was counted a failed
send: given back to the queue, or dead-lettered on its last attempt. It is a duplicate: acked
and counted as one, and nothing is sent twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, insert

from servicekit import migrations
from servicekit.db import Database, utcnow
from servicekit.envelope import CloudEvent
from servicekit.sealed import seal
from servicekit.tables import inbox
from servicekit.testing import pg_databases
from services.notifier.app import SERVICE
from services.notifier.pika_consumer import CONSUMER, PikaSmsConsumer
from services.notifier.sending import SMS_REQUESTED
from services.notifier.tests.test_sending import SECRET, Recorder

pytestmark = pytest.mark.real


class Channel:
    """What the consumer told the broker about each delivery."""

    def __init__(self) -> None:
        self.said: list[tuple[str, int]] = []

    def basic_ack(self, delivery_tag: int) -> None:
        self.said.append(("ack", delivery_tag))

    def basic_reject(self, delivery_tag: int, requeue: bool) -> None:
        self.said.append(("requeue" if requeue else "reject", delivery_tag))


@pytest.fixture
def db() -> Iterator[Database]:
    with pg_databases(["notifier"]) as urls:
        migrations.upgrade(SERVICE.migrations, urls["notifier"])
        database = Database(urls["notifier"])
        try:
            yield database
        finally:
            database.dispose()


def test_a_request_redelivered_while_the_first_notifier_sends_it_is_a_duplicate(
        db: Database) -> None:
    event = CloudEvent(SMS_REQUESTED, "/delivery", {
        "account_id": "a1", "phone_sealed": seal("13800138000", SECRET), "template": "notice",
        "text": "【人民法院在线服务】您好！您的申请已办结。"})
    provider, channel = Recorder(), Channel()
    consumer = PikaSmsConsumer(db, provider, broker_url="amqp://127.0.0.1:1/", queue="q",
                               secret=SECRET, max_attempts=5)
    delivery = SimpleNamespace(delivery_tag=7)
    engine = create_engine(db.url)
    try:
        with engine.connect() as first, ThreadPoolExecutor(1) as pool:
            tx = first.begin()  # the first notifier, still sending: its inbox row uncommitted
            first.execute(insert(inbox).values(consumer=CONSUMER, event_id=event.id,
                                               type=event.type, received_at=utcnow()))
            second = pool.submit(consumer._on_message, channel, delivery,
                                 SimpleNamespace(headers={"x-delivery-count": 1}),
                                 event.to_json().encode())
            time.sleep(0.5)  # the second finds no inbox row and waits on the first's
            tx.commit()
            second.result(timeout=30)
    finally:
        engine.dispose()
    assert channel.said == [("ack", 7)]
    assert provider.sent == []
