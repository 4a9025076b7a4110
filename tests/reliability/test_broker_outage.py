"""R1: the broker becomes unreachable (a TCP proxy between every AMQP client and RabbitMQ is
cut). Requests are still accepted, their events wait in the outbox, and once the line heals
every one of them is published and consumed: none lost, none applied twice. At the relay's
level, a stream of confirmed publishes is cut and stalled in the middle: every publish is
confirmed or failed within its timeout, and every row ends up sent exactly once."""

from __future__ import annotations

import collections
import json
import time

import pytest
from sqlalchemy import select
from werkzeug.test import Client

from ecourt import registry
from ecourt.embedded import Suite
from servicekit.publishers import PikaPublisher
from servicekit.relay import Relay
from servicekit.tables import inbox, outbox
from servicekit.testing import TcpProxy, pg_databases, unique, wait_for
from servicekit.topology import Subscription
from tests.reliability.helpers import (
    CountingConsumer,
    MutingProxy,
    TimedPublisher,
    declare_subscriptions,
    emit_many,
    inbox_ids,
    notifications,
    person,
    queue_depth,
    record_notification,
    unsent,
)

pytestmark = pytest.mark.real

REGISTERED = "identity.account.registered"
SMS_REQUESTED = "delivery.sms.requested"


def _outbox(suite: Suite, service: str, type_: str) -> dict[str, tuple[str, object]]:
    """event id -> (subject, sent_at) of ``service``'s outbox rows of ``type_``."""
    with suite.runtimes[service].db.transaction() as s:
        rows = s.execute(select(outbox.c.event_id, outbox.c.body, outbox.c.sent_at)
                         .where(outbox.c.type == type_)).all()
    return {r.event_id: (json.loads(r.body).get("subject"), r.sent_at) for r in rows}


def _inbox(suite: Suite, service: str, type_: str) -> list[str]:
    with suite.runtimes[service].db.transaction() as s:
        return list(s.scalars(select(inbox.c.event_id).where(
            inbox.c.consumer == service, inbox.c.type == type_)))


@pytest.fixture
def proxied_suite(tmp_path, vhost):  # type: ignore[no-untyped-def]
    proxy = TcpProxy("127.0.0.1", 5672)
    vhost_name = vhost.rsplit("/", 1)[1]
    with pg_databases(list(registry.SERVICES), prefix="ecourt_rel") as urls:
        suite = Suite(tmp_path / "suite", broker_url=f"amqp://guest:guest@127.0.0.1:"
                      f"{proxy.port}/{vhost_name}", database_urls=urls,
                      queue_prefix=unique("o") + ".", exchange=unique("rel.events"),
                      retry_base=0.05)
        try:
            suite.start_workers()  # declares the topology: the line must be up
            yield suite, proxy
        finally:
            proxy.heal()
            suite.stop()
            proxy.close()


def test_requests_accepted_while_the_broker_is_cut_lose_no_event(proxied_suite) -> None:  # type: ignore[no-untyped-def]
    suite, proxy = proxied_suite
    http = Client(suite.gateway)
    n = 40

    proxy.cut()
    accounts = []
    for _ in range(n):
        resp = http.post("/api/identity/accounts", json=person())
        assert resp.status_code == 201, resp.get_data(as_text=True)
        accounts.append(resp.get_json()["id"])

    events = {eid: subject for eid, (subject, _sent) in
              _outbox(suite, "identity", REGISTERED).items()}
    assert sorted(events.values()) == sorted(accounts)  # one event per accepted request
    assert all(sent is None for _s, sent in _outbox(suite, "identity", REGISTERED).values())
    relay = suite.relays["identity"]
    assert unsent(relay.db) == n

    proxy.heal()

    def all_sent_and_consumed() -> bool:
        rows = _outbox(suite, "identity", REGISTERED)
        return (all(sent is not None for _s, sent in rows.values())
                and len(_inbox(suite, "delivery", REGISTERED)) >= n)

    wait_for(all_sent_and_consumed, timeout=90, interval=0.2,
             message="every registration to be published and consumed after the outage")
    consumed = _inbox(suite, "delivery", REGISTERED)
    assert len(consumed) == n and set(consumed) == set(events), "events lost or duplicated"
    assert unsent(suite.runtimes["identity"].db) == 0

    # further downstream, too: delivery's SMS requests reach the notifier, once each
    wait_for(lambda: len(_inbox(suite, "notifier", SMS_REQUESTED)) >= n, timeout=60,
             interval=0.2, message="the notifier to consume every SMS request")
    sms = _outbox(suite, "delivery", SMS_REQUESTED)
    assert len(sms) == n and all(sent is not None for _s, sent in sms.values())
    assert sorted(_inbox(suite, "notifier", SMS_REQUESTED)) == sorted(sms)

    suite.stop()  # every relay and consumer thread ends: none hangs on the healed line
    assert [t.name for t in suite._threads if t.is_alive()] == []


R1_TYPE = "reliability.stream.happened"


def test_relay_stream_survives_cuts_stalls_and_lost_confirms(make_dbs, vhost, exchange,
                                                             workers) -> None:  # type: ignore[no-untyped-def]
    producer_db, consumer_db = make_dbs("producer", "consumer")
    sub = Subscription("rel_stream", (R1_TYPE,))
    declare_subscriptions(vhost, exchange, sub)
    proxy = MutingProxy("127.0.0.1", 5672)
    confirm_timeout, connect_timeout = 2.0, 2.0
    publisher = TimedPublisher(PikaPublisher(
        f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost.rsplit('/', 1)[1]}", exchange,
        confirm_timeout=confirm_timeout, connect_timeout=connect_timeout))
    relay = Relay("producer", producer_db, publisher, batch_size=50, poll_interval=0.05,
                  max_backoff=1.0)
    consumer = CountingConsumer("rel_stream", consumer_db, {R1_TYPE: record_notification},
                                broker_url=vhost, exchange=exchange, subscription=sub)
    ids: list[str] = []

    def stream(count: int) -> None:
        for _ in range(count // 10):
            ids.extend(emit_many(producer_db, R1_TYPE, 10))

    def all_sent() -> bool:
        return unsent(producer_db) == 0

    def failed_since(moment: float) -> int:
        return publisher.failures_since(moment)

    try:
        workers.start("relay", relay.run)
        workers.start("consumer", consumer.run)
        wait_for(consumer.ready.is_set, message="the consumer")
        stream(100)
        wait_for(all_sent, message="the stream to flow")

        # 1. cut while a batch waits for its confirms (the stall holds it in flight)
        moment = time.monotonic()
        proxy.stall()
        stream(50)
        wait_for(lambda: publisher.in_flight_since, timeout=10,
                 message="a batch in flight on the stalled line")
        proxy.cut()
        wait_for(lambda: failed_since(moment), timeout=10, message="the relay to see the cut")
        assert unsent(producer_db) > 0  # the rows stay until confirmed
        stream(50)  # the stream goes on while the broker is unreachable
        assert unsent(producer_db) > 0
        proxy.heal()
        wait_for(all_sent, timeout=30, message="the backlog after the cut")

        # 2. the line goes silent (no RST, no bytes): the relay gives up within its timeout
        moment = time.monotonic()
        proxy.stall()
        stream(50)
        wait_for(lambda: failed_since(moment), timeout=15,
                 message="the relay to give up on the stalled line")
        proxy.cut()
        proxy.heal()
        wait_for(all_sent, timeout=30, message="the backlog after the stall")

        # 3. publishes reach the broker but the confirms are lost: published again later
        moment = time.monotonic()
        delivered_before = sum(consumer.deliveries.values())
        proxy.mute_replies()
        stream(50)
        wait_for(lambda: failed_since(moment), timeout=15,
                 message="the relay to give up waiting for lost confirms")
        assert unsent(producer_db) > 0
        proxy.cut()
        proxy.heal()
        stream(100)
        wait_for(all_sent, timeout=30, message="the backlog after the lost confirms")
        wait_for(lambda: len(inbox_ids(consumer_db, sub.service)) >= len(ids), timeout=30,
                 message="the consumer to see every event")
        assert sum(consumer.deliveries.values()) > delivered_before

        def drained() -> bool:  # the republished copies may still be queued behind the rest
            before = sum(consumer.deliveries.values())
            time.sleep(0.3)
            return (queue_depth(vhost, sub.queue) == 0
                    and sum(consumer.deliveries.values()) == before)

        wait_for(drained, timeout=30, message="the consumer to drain every copy")
        assert workers.stop() == [], "a worker hung"
    finally:
        proxy.close()

    n = len(ids)
    assert n == 400
    with producer_db.transaction() as s:
        rows = s.execute(select(outbox.c.id, outbox.c.event_id, outbox.c.sent_at)).all()
    assert len(rows) == n and all(r.sent_at is not None for r in rows)
    confirmed = collections.Counter(row for call in publisher.calls for row in call.confirmed)
    assert set(confirmed) == {r.id for r in rows}
    assert max(confirmed.values()) == 1, "a row was confirmed (so marked sent) twice"
    limit = confirm_timeout + connect_timeout + 1.5
    slowest = max(c.seconds for c in publisher.calls)
    assert slowest <= limit, f"a publish took {slowest:.1f}s (bound {limit}s)"
    assert sum(1 for c in publisher.calls if c.error or c.failed) >= 3

    # the consumer: every event at least once (the lost confirms: some twice), every effect once
    assert set(consumer.deliveries) >= set(ids)
    assert max(consumer.deliveries[i] for i in ids) >= 2, "no republished event was seen"
    consumed = inbox_ids(consumer_db, sub.service)
    assert len(consumed) == n and set(consumed) == set(ids)
    assert notifications(consumer_db) == (n, n)
    assert queue_depth(vhost, sub.queue) == 0
