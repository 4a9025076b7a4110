"""The notifier (a plain pika consumer) when its database or its SMS gateway goes away for a
moment, as in a PostgreSQL restart: the SMS requests in flight wait and are sent once it is
back, each once, and none ends in the dead-letter queue (requeued at once, each used up its
attempts in milliseconds). A gateway that refuses a message gives it back at once; a code
past its expiry is not sent at all. Real broker, real PostgreSQL (behind a TCP proxy that
cuts, for the database's outage).

R6 for the notifier: its AMQP line goes silent (a proxy that stops forwarding and keeps the
connection open). pika's heartbeats notice it while the notifier consumes and while an SMS waits
for the gateway in place (``connection.sleep``); it connects again, each SMS is sent once. A
stop on such a line ends well within the deployments' grace periods."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from ecourt import registry
from servicekit import migrations
from servicekit.db import Database
from servicekit.envelope import CloudEvent
from servicekit.publishers import PikaPublisher
from servicekit.sealed import seal
from servicekit.testing import TcpProxy, pg_databases, unique, wait_for
from services.notifier import pika_consumer
from services.notifier.app import SERVICE
from services.notifier.models import SmsMessage
from services.notifier.pika_consumer import PikaSmsConsumer
from services.notifier.providers import SmsSendError
from tests.reliability.helpers import (
    FreezingProxy,
    Workers,
    databases,
    declare_subscriptions,
    publish_events,
    queue_depth,
    stopped_on_a_silent_line,
)

pytestmark = pytest.mark.real

SECRET = "test-secret"  # noqa: S105 - a test's own sealing key


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, message_id: str, phone: str, text: str) -> str:
        self.sent.append(message_id)
        return f"ref-{len(self.sent)}"


def _request(n: int, **extra: str) -> CloudEvent:
    return CloudEvent("delivery.sms.requested", "/delivery", {
        "account_id": f"a{n}", "phone_sealed": seal(f"1380013{n:04d}", SECRET),
        "template": "notice", "text_sealed": seal(f"第{n}号通知", SECRET), **extra})


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


class FlakyGateway(Recorder):
    """Down (a transient failure) until ``up_at``; refuses the ids in ``refused`` for good."""

    def __init__(self, up_at: float, refused: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.up_at = up_at
        self.refused = refused
        self.calls = 0

    def send(self, message_id: str, phone: str, text: str) -> str:
        self.calls += 1
        if message_id in self.refused:
            raise SmsSendError("gateway answered 400", transient=False)
        if time.monotonic() < self.up_at:
            raise SmsSendError("ConnectTimeout")
        return super().send(message_id, phone, text)


def _statuses(db: Database) -> dict[str, str]:
    with db.transaction() as s:
        return dict(s.execute(select(SmsMessage.event_id, SmsMessage.status)).all())


def _run_notifier(notifier_url, vhost, exchange, workers, provider, events,  # type: ignore[no-untyped-def]
                  proxy: FreezingProxy | None = None, heartbeat: int = 30):
    """A notifier started (behind ``proxy`` if given) and ``events`` published to it straight
    (not through the proxy): (its database, its subscription)."""
    sub = registry.subscription("notifier", unique("n") + ".")
    declare_subscriptions(vhost, exchange, sub)
    db = Database(notifier_url)
    url = vhost if proxy is None else \
        f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost.rsplit('/', 1)[1]}"
    consumer = PikaSmsConsumer(db, provider, broker_url=url, queue=sub.queue, secret=SECRET,
                               max_attempts=3, heartbeat=heartbeat)
    workers.start("notifier", consumer.run)
    wait_for(consumer.ready.is_set, message="the notifier")
    publisher = PikaPublisher(vhost, exchange)
    try:
        publish_events(publisher, "topic", "delivery.sms.requested", events)
    finally:
        publisher.close()
    return db, sub


def test_sms_requests_wait_out_an_sms_gateway_outage_in_place(
        notifier_url: str, vhost, exchange, workers: Workers, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pika_consumer, "RETRY_BACKOFF", (0.05, 0.2))
    provider = FlakyGateway(up_at=time.monotonic() + 2.0)
    events = [_request(n) for n in range(5)]
    db, sub = _run_notifier(notifier_url, vhost, exchange, workers, provider, events)
    try:
        wait_for(lambda: len(provider.sent) == 5, timeout=60, message="every SMS once it is up")
        assert provider.calls > 5  # it was down: tried again in place
        assert sorted(provider.sent) == sorted(e.id for e in events)  # once each
        assert queue_depth(vhost, sub.dlq) == 0
    finally:
        assert workers.stop() == []
        db.dispose()


def test_an_sms_the_gateway_refuses_is_given_back_at_once_and_dead_lettered(
        notifier_url: str, vhost, exchange, workers: Workers) -> None:  # type: ignore[no-untyped-def]
    events = [_request(n) for n in range(3)]
    provider = FlakyGateway(up_at=0.0, refused=frozenset({events[1].id}))
    db, sub = _run_notifier(notifier_url, vhost, exchange, workers, provider, events)
    try:
        wait_for(lambda: queue_depth(vhost, sub.dlq) == 1, timeout=30,
                 message="the refused SMS in the dead-letter queue after its attempts")
        assert sorted(provider.sent) == sorted([events[0].id, events[2].id])
    finally:
        assert workers.stop() == []
        db.dispose()


def test_a_code_past_its_expiry_is_recorded_and_not_sent(
        notifier_url: str, vhost, exchange, workers: Workers) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from servicekit.db import utcnow

    late = _request(1, expires_at=(utcnow() - timedelta(seconds=1)).isoformat())
    fresh = _request(2, expires_at=(utcnow() + timedelta(minutes=5)).isoformat())
    provider = Recorder()
    db, sub = _run_notifier(notifier_url, vhost, exchange, workers, provider, [late, fresh])
    try:
        wait_for(lambda: len(_statuses(db)) == 2, timeout=30, message="both requests handled")
        assert _statuses(db) == {late.id: "expired", fresh.id: "sent"}
        assert provider.sent == [fresh.id]
    finally:
        assert workers.stop() == []
        db.dispose()


# -- R6: a silent AMQP line ------------------------------------------------------------------
#: the tests' heartbeat (seconds); pika checks for the broker's every heartbeat + 5 seconds and
#: gives the line up at the first check that finds nothing received since the one before (the
#: second after the freeze, at worst)
HEARTBEAT = 1
NOTICED_WITHIN = 3 * (HEARTBEAT + 5)


def _given_back() -> dict[str, float]:
    """The notifier's SMS requests counted given back, by outcome."""
    return {outcome: REGISTRY.get_sample_value("events_consumed_total", {
        "service": "notifier", "type": "delivery.sms.requested", "outcome": outcome}) or 0.0
        for outcome in ("retried", "dead_lettered")}


def test_a_stop_on_a_silent_line_ends_well_within_the_grace_period(
        notifier_url: str, vhost, exchange, workers: Workers) -> None:  # type: ignore[no-untyped-def]
    """``ecourt consume notifier`` stops on TERM by setting its stop event. With the default
    heartbeat (30 s) pika's polite close on a dead line waited for answers that never came
    until its heartbeat check gave the line up (70 s here), past compose's 30 s and
    Kubernetes' 60 s before the kill; it now gives up after ``CLOSE_WITHIN`` seconds."""
    provider = Recorder()
    events = [_request(n) for n in range(5)]
    proxy = FreezingProxy("127.0.0.1", 5672)
    db = None
    try:
        db, sub = _run_notifier(notifier_url, vhost, exchange, workers, provider, events, proxy)
        wait_for(lambda: _recorded(db) == 5, timeout=30, message="every SMS sent")
        stopped_in = stopped_on_a_silent_line(proxy, workers)
    finally:
        proxy.close()
        if db is not None:
            db.dispose()
    assert sorted(provider.sent) == sorted(e.id for e in events)  # once each
    print(f"stopped in {stopped_in:.1f}s on a silent line")


def test_a_line_that_goes_silent_under_the_notifier_is_given_up_and_it_connects_again(
        notifier_url: str, vhost, exchange, workers: Workers) -> None:  # type: ignore[no-untyped-def]
    provider = Recorder()
    first = [_request(n) for n in range(5)]
    proxy = FreezingProxy("127.0.0.1", 5672)
    try:
        db, sub = _run_notifier(notifier_url, vhost, exchange, workers, provider, first, proxy,
                                heartbeat=HEARTBEAT)
        wait_for(lambda: _recorded(db) == 5, timeout=30, message="the first SMS sent")
        proxy.freeze()
        frozen_at = time.monotonic()
        rest = [_request(n) for n in range(5, 10)]
        publisher = PikaPublisher(vhost, exchange)
        try:
            publish_events(publisher, "topic", "delivery.sms.requested", rest)
        finally:
            publisher.close()
        wait_for(lambda: proxy.connections() >= 2, timeout=NOTICED_WITHIN,
                 message="the notifier to give the silent line up and connect again")
        reconnected_in = time.monotonic() - frozen_at
        wait_for(lambda: len(provider.sent) >= 10, timeout=30,
                 message="every SMS on the new connection")
        assert sorted(provider.sent) == sorted(e.id for e in first + rest)  # once each
        assert queue_depth(vhost, sub.dlq) == 0
        assert workers.stop() == []
        db.dispose()
    finally:
        proxy.close()
    print(f"connected again {reconnected_in:.1f}s after the freeze")


def test_a_line_that_goes_silent_while_an_sms_waits_for_the_gateway_is_given_up(
        notifier_url: str, vhost, exchange, workers: Workers, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The wait in place for the gateway (up to ``PROVIDER_PATIENCE``, two minutes) keeps
    pika's heartbeats going, so a line that dies meanwhile is noticed there too, not only two
    minutes later; the SMS is sent once, on the new connection, once the gateway is back. The
    lost line is not a failed send: nothing counts it retried (the broker gives the message
    back, not us)."""
    monkeypatch.setattr(pika_consumer, "RETRY_BACKOFF", (0.05, 0.2))
    before = _given_back()
    provider = FlakyGateway(up_at=float("inf"))
    event = _request(1)
    proxy = FreezingProxy("127.0.0.1", 5672)
    try:
        db, sub = _run_notifier(notifier_url, vhost, exchange, workers, provider, [event], proxy,
                                heartbeat=HEARTBEAT)
        wait_for(lambda: provider.calls >= 2, timeout=30, message="the SMS waiting for the gateway")
        proxy.freeze()
        frozen_at = time.monotonic()
        wait_for(lambda: proxy.connections() >= 2, timeout=NOTICED_WITHIN,
                 message="the notifier to give the silent line up and connect again")
        reconnected_in = time.monotonic() - frozen_at
        provider.up_at = 0.0
        wait_for(lambda: provider.sent == [event.id], timeout=30,
                 message="the SMS sent on the new connection")
        assert queue_depth(vhost, sub.dlq) == 0
        assert workers.stop() == []
        assert provider.sent == [event.id]
        assert _given_back() == before
        db.dispose()
    finally:
        proxy.close()
    print(f"connected again {reconnected_in:.1f}s after the freeze")
