"""R6: the consumer's AMQP line goes silent — the TCP connection stays open and acknowledged,
so TCP itself never notices (TCP_USER_TIMEOUT does not fire), but no byte gets through either
way, for good: a proxy, load balancer or NAT that lost its state for that one flow, while new
connections pass. py-amqp waits for the broker's answers (queue declarations, the Close-OK of a
graceful close) on a blocking socket; without a read timeout the consumer hung there for ever,
so it never connected again, and a stop hung too. Real broker, real database, heartbeats of a
second."""

from __future__ import annotations

import time

import pytest

from servicekit import consumer as consumer_module
from servicekit.testing import unique, wait_for
from servicekit.topology import Subscription
from tests.reliability.helpers import (
    CountingConsumer,
    FreezingProxy,
    Workers,
    declare_subscriptions,
    emit_many,
    inbox_ids,
    notifications,
    record_notification,
    stopped_on_a_silent_line,
)

pytestmark = pytest.mark.real

TYPE = "reliability.stalled.happened"
HEARTBEAT = 1


def _publish(producer, vhost: str, exchange: str, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    """``n`` events through the outbox, published straight to the broker (not the proxy)."""
    from servicekit.publishers import PikaPublisher
    from servicekit.relay import Relay

    ids = emit_many(producer, TYPE, n)
    relay = Relay("producer", producer, PikaPublisher(vhost, exchange), poll_interval=0.05)
    while relay.run_once():
        pass
    relay.publisher.close()
    return ids


def _consumer(consumer_db, sub: Subscription, proxy: FreezingProxy, vhost: str,  # type: ignore[no-untyped-def]
              exchange: str, heartbeat: int = HEARTBEAT) -> CountingConsumer:
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost.rsplit('/', 1)[1]}"
    return CountingConsumer(sub.service, consumer_db, {TYPE: record_notification},
                            broker_url=url, exchange=exchange, subscription=sub,
                            heartbeat=heartbeat)


def _consuming(make_dbs, vhost: str, exchange: str, workers: Workers, name: str,  # type: ignore[no-untyped-def]
               n: int, heartbeat: int = HEARTBEAT):
    """A consumer behind a ``FreezingProxy``, started, that has handled ``n`` events:
    (producer, consumer_db, sub, ids, proxy, consumer)."""
    producer, consumer_db = make_dbs("producer", "consumer")
    sub = Subscription(unique(name), (TYPE,))
    declare_subscriptions(vhost, exchange, sub)
    ids = _publish(producer, vhost, exchange, n)
    proxy = FreezingProxy("127.0.0.1", 5672)
    consumer = _consumer(consumer_db, sub, proxy, vhost, exchange, heartbeat)
    workers.start("consumer", consumer.run)
    try:
        wait_for(lambda: len(inbox_ids(consumer_db, sub.service)) >= len(ids), timeout=30,
                 message="the first events handled")
    except BaseException:
        proxy.close()
        raise
    return producer, consumer_db, sub, ids, proxy, consumer


def test_a_line_that_goes_silent_while_the_consumer_declares_is_given_up(
        make_dbs, vhost, exchange, workers: Workers, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    producer, consumer_db = make_dbs("producer", "consumer")
    sub = Subscription(unique("rel_stall_setup"), (TYPE,))
    declare_subscriptions(vhost, exchange, sub)
    ids = _publish(producer, vhost, exchange, 100)
    proxy = FreezingProxy("127.0.0.1", 5672)
    declared: list[float] = []
    real_declare = consumer_module.declare

    def declare_on_a_line_gone_silent(conn, exchange_, subs) -> None:  # type: ignore[no-untyped-def]
        declared.append(time.monotonic())
        if len(declared) == 1:  # connected; now the line dies before the first declaration
            proxy.freeze()
        real_declare(conn, exchange_, subs)

    monkeypatch.setattr(consumer_module, "declare", declare_on_a_line_gone_silent)
    consumer = _consumer(consumer_db, sub, proxy, vhost, exchange)
    try:
        workers.start("consumer", consumer.run)
        wait_for(lambda: len(declared) >= 2, timeout=4 * HEARTBEAT + 6,
                 message="the consumer to give up the silent line and connect again")
        wait_for(lambda: len(inbox_ids(consumer_db, sub.service)) >= len(ids), timeout=30,
                 message="every event handled on the new connection")
        assert proxy.connections() == 2
        assert sorted(inbox_ids(consumer_db, sub.service)) == sorted(ids)
        assert notifications(consumer_db) == (len(ids), len(ids))
        assert workers.stop() == [], "the consumer hung on stop"
    finally:
        proxy.close()


def test_a_line_that_goes_silent_under_a_running_consumer_is_dropped_not_closed(
        make_dbs, vhost, exchange, workers: Workers) -> None:  # type: ignore[no-untyped-def]
    """The heartbeats notice the silence; the consumer must then drop the connection rather
    than wait for the broker to confirm a graceful close, connect again and handle every event
    once. A stop on a silent line ends too."""
    producer, consumer_db, sub, ids, proxy, consumer = _consuming(
        make_dbs, vhost, exchange, workers, "rel_stall_run", 100)
    try:
        proxy.freeze()
        frozen_at = time.monotonic()
        ids += _publish(producer, vhost, exchange, 100)  # waiting in the queue meanwhile
        wait_for(lambda: proxy.connections() >= 2, timeout=3 * HEARTBEAT + 5,
                 message="the consumer to drop the silent line and connect again")
        reconnected_in = time.monotonic() - frozen_at
        wait_for(lambda: len(inbox_ids(consumer_db, sub.service)) >= len(ids), timeout=30,
                 message="every event handled on the new connection")
        assert sorted(inbox_ids(consumer_db, sub.service)) == sorted(ids)
        assert notifications(consumer_db) == (len(ids), len(ids))
        assert set(consumer.deliveries) >= set(ids)

        # the line dies again, and the service is stopped before the heartbeats notice
        proxy.freeze()
        stopping = time.monotonic()
        assert workers.stop(timeout=4 * 2 * HEARTBEAT + 5) == [], "the stop hung"
        stopped_in = time.monotonic() - stopping
    finally:
        proxy.close()
    print(f"reconnected {reconnected_in:.1f}s after the freeze; stopped in {stopped_in:.1f}s")


def test_a_stop_on_a_silent_line_ends_well_within_the_grace_period(
        make_dbs, vhost, exchange, workers: Workers) -> None:  # type: ignore[no-untyped-def]
    """With the default heartbeat (30 s: reads time out after 60 s) the polite close on a dead
    line waited a read timeout per step, two minutes in all, well past Kubernetes' 30 s grace
    before the kill. A stop now gives the close ``consumer.CLOSE_WITHIN`` seconds, then drops
    the line; every event handled before is handled once."""
    _producer, consumer_db, sub, ids, proxy, _ = _consuming(
        make_dbs, vhost, exchange, workers, "rel_stall_stop", 20, heartbeat=30)
    try:
        stopped_in = stopped_on_a_silent_line(proxy, workers)
    finally:
        proxy.close()
    assert sorted(inbox_ids(consumer_db, sub.service)) == sorted(ids)
    print(f"stopped in {stopped_in:.1f}s on a silent line")
