"""R7: the database goes away in the middle of traffic, as in a PostgreSQL restart or failover
(a TCP proxy in front of PostgreSQL drops every connection and refuses new ones, then heals).
Every request either succeeds or fails cleanly with a 503 problem that says to try again;
nothing is half-written (each account has its one event, each event its account); the service
recovers by itself once the database is back; and a relay and a consumer whose database goes
away keep running and lose or repeat nothing in effect."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select, text
from werkzeug.test import Client

from ecourt.embedded import Suite
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
