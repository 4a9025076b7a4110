"""R7: the database goes away in the middle of traffic, as in a PostgreSQL restart or failover
(a TCP proxy in front of PostgreSQL drops every connection and refuses new ones, then heals).
Every request either succeeds or fails cleanly with a 503 problem that says to try again;
nothing is half-written (each account has its one event, each event its account); the service
recovers by itself once the database is back; and a relay and a consumer whose database goes
away keep running and lose or repeat nothing in effect."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
from sqlalchemy import select, text
from werkzeug.test import Client

from ecourt.embedded import Suite
from servicekit import consumer as consumer_module
from servicekit.consumer import ATTEMPT_HEADER, EventConsumer
from servicekit.envelope import CloudEvent
from servicekit.publishers import PikaPublisher
from servicekit.relay import Relay
from servicekit.tables import outbox
from servicekit.testing import TcpProxy, pg_databases, wait_for
from servicekit.topology import Subscription
from tests.reliability.helpers import (
    CountingConsumer,
    databases,
    declare_subscriptions,
    emit_many,
    inbox_ids,
    notifications,
    person,
    publish_raw,
    record_notification,
    unsent,
    wait_consumer_ready,
)

pytestmark = pytest.mark.real

REGISTERED = "identity.account.registered"


@pytest.fixture
def identity_through_a_proxy(tmp_path, infrastructure):  # type: ignore[no-untyped-def]
    proxy = TcpProxy("127.0.0.1", 5432)
    # identity alone on PostgreSQL (the one cut); the others on SQLite files, as embedded
    with pg_databases(["identity"], prefix="ecourt_rel") as urls:
        direct = urls["identity"]
        urls["identity"] = direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        suite = Suite(tmp_path / "suite", database_urls=urls)
        try:
            yield suite, proxy
        finally:
            proxy.heal()
            suite.stop()
            proxy.close()


def test_a_database_restart_fails_requests_cleanly_and_writes_nothing_by_halves(
        identity_through_a_proxy) -> None:  # type: ignore[no-untyped-def]
    suite, proxy = identity_through_a_proxy
    http = Client(suite.gateway)
    statuses: list[int] = []
    created: list[str] = []
    for i in range(45):
        if i == 10:
            proxy.cut()
        if i == 30:
            proxy.heal()
        resp = http.post("/api/identity/accounts", json=person())
        statuses.append(resp.status_code)
        if resp.status_code == 201:
            created.append(resp.get_json()["id"])
            continue
        assert resp.status_code == 503, resp.get_data(as_text=True)
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert resp.get_json()["type"].endswith("/database-unavailable")
        assert resp.headers["Retry-After"] == "5"

    assert statuses[:10] == [201] * 10
    assert statuses[10:30] == [503] * 20  # (the pool's pre-ping finds each connection dead)
    assert statuses[-10:] == [201] * 10  # back by itself, no restart of the service

    with suite.runtimes["identity"].db.transaction() as s:
        accounts = set(s.scalars(text("SELECT id FROM accounts")))
        events = [json.loads(body)["subject"] for body in s.scalars(
            select(outbox.c.body).where(outbox.c.type == REGISTERED))]
    assert set(created) <= accounts
    assert sorted(events) == sorted(accounts)  # one event per account, no ghost, no orphan


R7_TYPE = "reliability.db.happened"


def test_relay_and_consumer_ride_out_a_database_cut(make_dbs, vhost, exchange, workers) -> None:  # type: ignore[no-untyped-def]
    """The relay's and the consumer's database goes away while events flow and comes back:
    both keep running, every event is published and handled, none twice in effect (a row
    published but not marked sent before the cut goes out again; the inbox absorbs it)."""
    producer, consumer_side = make_dbs("producer", "consumer")
    proxy = TcpProxy("127.0.0.1", 5432)
    sub = Subscription("rel_db", (R7_TYPE,))
    declare_subscriptions(vhost, exchange, sub)
    with databases(producer.url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"),
                   consumer_side.url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"),
                   ) as (relay_db, consumer_db):
        relay = Relay("producer", relay_db, PikaPublisher(vhost, exchange), batch_size=50,
                      poll_interval=0.05, max_backoff=1.0)
        consumer = CountingConsumer("rel_db", consumer_db, {R7_TYPE: record_notification},
                                    broker_url=vhost, exchange=exchange, subscription=sub)
        try:
            workers.start("relay", relay.run)
            workers.start("consumer", consumer.run)
            wait_consumer_ready(consumer)
            ids = emit_many(producer, R7_TYPE, 200)  # written straight, not through the cut
            wait_for(lambda: unsent(producer) == 0, timeout=30, message="the first events")
            proxy.cut()
            # events reach the consumer while its database is away (published by a relay on
            # the live line), and more wait in the outbox for the relay whose line is cut
            ids += emit_many(producer, R7_TYPE, 200)
            live = Relay("producer", producer, PikaPublisher(vhost, exchange), batch_size=100)
            try:
                while live.run_once():
                    pass
            finally:
                live.publisher.close()
            handled = len(inbox_ids(consumer_side, sub.service))
            ids += emit_many(producer, R7_TYPE, 100)
            time.sleep(1.5)  # relay and consumer meet the dead line and back off
            assert len(inbox_ids(consumer_side, sub.service)) == handled < len(ids) - 100
            assert unsent(producer) == 100
            proxy.heal()
            wait_for(lambda: unsent(producer) == 0, timeout=60,
                     message="the relay to publish the rest after the cut")
            wait_for(lambda: len(inbox_ids(consumer_side, sub.service)) >= len(ids),
                     timeout=60, message="the consumer to handle every event after the cut")
            assert sorted(inbox_ids(consumer_side, sub.service)) == sorted(ids)
            assert notifications(consumer_side) == (len(ids), len(ids))  # once each
            assert all(t.is_alive() for t in workers.threads)
        finally:
            proxy.heal()
            assert workers.stop() == []
            proxy.close()


# -- the consumer's batch during an outage, and a statement that fails on a working server --
class _Delivery:
    """What ``EventConsumer.handle`` reads of a delivered message: its headers."""

    def __init__(self, headers: dict | None = None) -> None:
        self.headers = headers or {}


def _parsed(*events: CloudEvent) -> list:
    return [(_Delivery(), event) for event in events]


def test_a_consumer_waits_out_an_outage_in_place_however_long_and_hands_nothing_back(
        make_dbs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The batch stays with the consumer until its database is back: handing it back to the
    broker would count a delivery each time, and past the quorum queue's delivery limit a
    long outage would dead-letter healthy events. Only a stop gives it back."""
    monkeypatch.setattr(consumer_module, "OUTAGE_BACKOFF", (0.005, 0.02))
    (db,) = make_dbs("outage")
    proxy = TcpProxy("127.0.0.1", 5432)
    tries: list[int] = []
    with databases(db.url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")) as (cut_db,):
        consumer = EventConsumer("rel_out", cut_db, {R7_TYPE: record_notification},
                                 broker_url="memory://", exchange="unused")
        fast = consumer._fast

        def counted(*args):  # type: ignore[no-untyped-def]
            tries.append(1)
            return fast(*args)

        consumer._fast = counted  # type: ignore[method-assign]
        events = [CloudEvent(R7_TYPE, "/reliability", {"n": i}) for i in range(3)]
        stop = threading.Event()
        try:
            proxy.cut()
            result: list = []
            worker = threading.Thread(target=lambda: result.append(
                consumer.handle(_parsed(*events), stop)))
            worker.start()
            # far more tries than the consumer used to allow before handing the batch back
            wait_for(lambda: len(tries) > 30, timeout=30, message="tries during the outage")
            assert worker.is_alive() and result == []
            proxy.heal()
            worker.join(30)
            assert result == [[("handled", R7_TYPE)] * 3]
            assert sorted(inbox_ids(db, "rel_out")) == sorted(e.id for e in events)

            # a stop during an outage gives the batch back at once (None: requeue)
            proxy.cut()
            stop.set()
            assert consumer.handle(_parsed(CloudEvent(R7_TYPE, "/reliability", {})),
                                   stop) is None
        finally:
            proxy.heal()
            proxy.close()


def test_a_statement_timeout_in_a_handler_is_that_events_failure_not_an_outage(
        make_dbs) -> None:  # type: ignore[no-untyped-def]
    """A handler that runs past ``statement_timeout`` on a working PostgreSQL is retried with
    delay and in the end dead-lettered, like any failing handler; its neighbours are handled.
    Taken for an outage, it would hold the whole batch for ever."""
    (db,) = make_dbs("timeouts")

    def slow(session, event: CloudEvent) -> None:  # type: ignore[no-untyped-def]
        if event.data.get("slow"):
            session.execute(text("SET LOCAL statement_timeout = '20ms'"))
            session.execute(text("SELECT pg_sleep(2)"))
        record_notification(session, event)

    consumer = EventConsumer("rel_slow", db, {R7_TYPE: slow}, broker_url="memory://",
                             exchange="unused", max_attempts=2)
    events = [CloudEvent(R7_TYPE, "/reliability", {"slow": True}),
              CloudEvent(R7_TYPE, "/reliability", {})]
    stop = threading.Event()
    done: list = []
    worker = threading.Thread(target=lambda: done.append(consumer.handle(_parsed(*events),
                                                                         stop)))
    worker.start()
    worker.join(20)
    stop.set()
    worker.join(10)
    assert done == [[("retried", R7_TYPE), ("handled", R7_TYPE)]]
    assert inbox_ids(db, "rel_slow") == [events[1].id]
    last = [(_Delivery({ATTEMPT_HEADER: 2}), events[0])]
    assert consumer.handle(last, stop) == [("dead_lettered", R7_TYPE)]
    with db.transaction() as s:
        routes = list(s.scalars(select(outbox.c.routing_key).order_by(outbox.c.id)))
    assert routes == [consumer.subscription.queue, consumer.subscription.dlq]


def test_a_consumer_whose_broker_line_drops_during_a_database_outage_reconnects_at_once(
        make_dbs, vhost, exchange, workers, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A batch waiting out its database's outage cannot be acked on a connection that is
    gone: the consumer gives it back and connects again without waiting for the database,
    and once the database is back every event is handled once."""
    monkeypatch.setattr(consumer_module, "OUTAGE_BACKOFF", (0.05, 0.2))
    (db,) = make_dbs("dropped")
    proxy = TcpProxy("127.0.0.1", 5432)
    sub = Subscription("rel_drop", (R7_TYPE,))
    declare_subscriptions(vhost, exchange, sub)
    events = [CloudEvent(R7_TYPE, "/reliability", {"n": i}) for i in range(20)]
    with databases(db.url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")) as (cut_db,):
        consumer = CountingConsumer("rel_drop", cut_db, {R7_TYPE: record_notification},
                                    broker_url=vhost, exchange=exchange, subscription=sub,
                                    heartbeat=2)
        try:
            workers.start("consumer", consumer.run)
            wait_consumer_ready(consumer)
            proxy.cut()
            for event in events:
                publish_raw(vhost, sub.queue, event.to_json().encode(), message_id=event.id)
            wait_for(lambda: sum(consumer.deliveries.values()) >= len(events), timeout=30,
                     message="the batch to reach the consumer while its database is away")
            consumer.ready.clear()
            subprocess.run(["rabbitmqctl", "-q", "close_all_connections", "--vhost",
                            vhost.rsplit("/", 1)[1], "test: the line drops"],
                           check=True, capture_output=True, timeout=60)
            wait_for(consumer.ready.is_set, timeout=15,
                     message="the consumer to connect again while its database is still away")
            assert inbox_ids(db, "rel_drop") == []
            proxy.heal()
            wait_for(lambda: len(inbox_ids(db, "rel_drop")) == len(events), timeout=60,
                     message="every event handled once the database is back")
            assert notifications(db) == (len(events), len(events))
        finally:
            proxy.heal()
            assert workers.stop() == []
            proxy.close()
