"""A consumer whose handler has a side effect no rollback takes back (the notifier's SMS)
handles one event per transaction: a failing event must not make its neighbours run twice.
On kombu's in-memory transport, as the embedded suite runs it."""

from __future__ import annotations

import collections
import threading
from pathlib import Path

from kombu import Connection, Exchange, Producer
from sqlalchemy.orm import Session

from ecourt import registry
from servicekit import migrations
from servicekit.consumer import EventConsumer
from servicekit.db import Database
from servicekit.envelope import CloudEvent
from servicekit.testing import unique, wait_for
from servicekit.topology import Subscription, declare

TYPE = "test.side_effect"


def _run(tmp_path: Path, batch_size: int) -> collections.Counter[str]:
    url = f"sqlite:///{tmp_path / f'delivery-{batch_size}.db'}"
    migrations.upgrade(registry.get("delivery").migrations, url)
    db = Database(url)
    exchange = unique("batches")
    sub = Subscription(unique("side"), (TYPE,))
    calls: collections.Counter[str] = collections.Counter()
    events = [CloudEvent(TYPE, "/test", {"fail": n == 1}) for n in range(3)]

    def handler(_session: Session, event: CloudEvent) -> None:
        calls[event.id] += 1  # stands in for an SMS: done, whatever the transaction does
        if event.data["fail"]:
            raise RuntimeError("the gateway refused this one")

    consumer = EventConsumer(sub.service, db, {TYPE: handler}, broker_url="memory://",
                             exchange=exchange, subscription=sub, batch_size=batch_size)
    stop = threading.Event()
    with Connection("memory://") as conn:
        declare(conn, exchange, [sub])
        producer = Producer(conn.default_channel, exchange=Exchange(exchange, type="topic"))
        for event in events:  # all waiting before the consumer reads: one read, one batch
            producer.publish(event.to_json(), routing_key=TYPE,
                             content_type="application/cloudevents+json")
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: all(calls[e.id] for e in events), timeout=15,
                 message="every event handled")
        wait_for(lambda: calls[events[1].id] >= 1, timeout=5, message="the failure")
    finally:
        stop.set()
        thread.join(15)
        db.dispose()
    return collections.Counter({n: calls[e.id] for n, e in enumerate(events)})


def test_one_event_per_transaction_never_runs_a_neighbour_twice(tmp_path: Path) -> None:
    calls = _run(tmp_path, batch_size=1)
    assert calls[0] == 1 and calls[2] == 1


def test_the_embedded_notifier_takes_one_event_per_transaction(tmp_path: Path) -> None:
    from ecourt.embedded import Suite

    suite = Suite(tmp_path / "suite")
    try:
        assert suite.make_consumer("notifier").batch_size == 1
        assert suite.make_consumer("delivery").batch_size > 1
    finally:
        suite.stop()
