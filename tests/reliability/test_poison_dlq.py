"""R5: a handler that keeps raising parks its event in the service's dead-letter queue after
exactly ``max_attempts`` deliveries while the other events flow; ``ecourt dlq list`` shows it,
``ecourt dlq replay`` brings it back and it is handled once the handler is fixed. A message
that is not a CloudEvent is rejected and parked by the broker's dead-letter exchange."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import insert

from ecourt import registry
from servicekit import dlq
from servicekit.consumer import ATTEMPT_HEADER, Handler
from servicekit.db import Database, utcnow
from servicekit.envelope import CloudEvent
from servicekit.publishers import PikaPublisher
from servicekit.relay import Relay
from servicekit.testing import unique, wait_for
from tests.reliability.helpers import (
    NOTIFICATIONS,
    ROOT,
    CountingConsumer,
    Workers,
    declare_subscriptions,
    emit_many,
    inbox_ids,
    notifications,
    publish_raw,
    queue_depth,
    record_notification,
)

pytestmark = pytest.mark.real

SERVICE = "delivery"  # the real subscription's names, so the CLI finds the queues
TYPE = registry.SERVICES[SERVICE].consumes[0]
ECOURT = ROOT / ".venv" / "bin" / "ecourt"


def _cli(vhost: str, prefix: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ECOURT_BROKER_URL": vhost, "ECOURT_QUEUE_PREFIX": prefix,
           "ECOURT_DATA_DIR": str(tmp_path), "ECOURT_LOG_LEVEL": "WARNING"}
    return subprocess.run([str(ECOURT), "dlq", *args], env=env, cwd=tmp_path,  # noqa: S603
                          capture_output=True, text=True, timeout=60, check=False)


def _start(db: Database, vhost: str, exchange: str, prefix: str, workers: Workers,
           handler: Handler) -> CountingConsumer:
    """The ``delivery`` subscription (with ``prefix``) consumed by ``handler``, and a relay
    for the retries and dead letters the consumer writes to its outbox."""
    sub = registry.subscription(SERVICE, prefix)
    consumer = CountingConsumer(SERVICE, db, {TYPE: handler}, broker_url=vhost,
                                exchange=exchange, subscription=sub, max_attempts=3,
                                retry_base=0.05, batch_size=10)
    relay = Relay(SERVICE, db, PikaPublisher(vhost, exchange, confirm_timeout=5),
                  poll_interval=0.05, max_backoff=1.0)
    workers.start("relay", relay.run)  # publishes the events, the retries and dead letters
    workers.start("consumer", consumer.run)
    wait_for(consumer.ready.is_set, message="the consumer to start")
    return consumer


def test_poison_event_is_dead_lettered_after_max_attempts_and_replayed(
        make_dbs, vhost, exchange, workers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    [db] = make_dbs("poison")
    prefix = unique("p") + "."
    sub = registry.subscription(SERVICE, prefix)
    declare_subscriptions(vhost, exchange, sub)
    ids = emit_many(db, TYPE, 30)
    poison = ids[7]
    broken = threading.Event()
    broken.set()
    calls: list[str] = []

    def handler(session, event: CloudEvent) -> None:  # type: ignore[no-untyped-def]
        calls.append(event.id)
        if event.id == poison and broken.is_set():
            raise RuntimeError("poisoned on purpose")
        record_notification(session, event)

    consumer = _start(db, vhost, exchange, prefix, workers, handler)

    letters = wait_for(lambda: dlq.list_dead_letters(vhost, sub.dlq), timeout=30,
                       message="the poison event in the dead-letter queue")
    [letter] = letters
    assert letter.event_id == poison and letter.type == TYPE
    assert letter.attempts == 3 and letter.headers[ATTEMPT_HEADER] == 3
    assert "poisoned on purpose" in letter.error
    assert consumer.deliveries[poison] == 3  # exactly max_attempts deliveries, then parked
    # everything else was handled meanwhile, once
    wait_for(lambda: len(inbox_ids(db, SERVICE)) == len(ids) - 1, timeout=30,
             message="the other events to be handled")
    assert set(inbox_ids(db, SERVICE)) == set(ids) - {poison}
    assert notifications(db) == (len(ids) - 1, len(ids) - 1)

    listed = _cli(vhost, prefix, tmp_path, "list", SERVICE)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.startswith(f"{poison}\t{TYPE}\tattempts=3\t"), line
    assert "poisoned on purpose" in line
    assert f"1 dead letter(s) in {sub.dlq}" in listed.stderr
    assert len(dlq.list_dead_letters(vhost, sub.dlq)) == 1  # listing does not consume

    missing = _cli(vhost, prefix, tmp_path, "replay", SERVICE, "no-such-event")
    assert missing.returncode == 1 and not missing.stdout.strip()
    assert len(dlq.list_dead_letters(vhost, sub.dlq)) == 1

    broken.clear()  # the fix is deployed
    replayed = _cli(vhost, prefix, tmp_path, "replay", SERVICE, poison)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == f"replayed {poison}"
    wait_for(lambda: poison in inbox_ids(db, SERVICE), timeout=30,
             message="the replayed event to be handled")
    assert dlq.list_dead_letters(vhost, sub.dlq) == []
    assert queue_depth(vhost, sub.dlq) == 0
    assert notifications(db) == (len(ids), len(ids))
    assert consumer.deliveries[poison] == 4
    assert workers.stop() == []


def test_malformed_message_is_parked_by_the_broker_and_the_consumer_keeps_going(
        make_dbs, vhost, exchange, workers) -> None:  # type: ignore[no-untyped-def]
    [db] = make_dbs("malformed")
    prefix = unique("m") + "."
    sub = registry.subscription(SERVICE, prefix)
    declare_subscriptions(vhost, exchange, sub)
    _start(db, vhost, exchange, prefix, workers, record_notification)

    publish_raw(vhost, sub.queue, b"this is { not json", message_id="garbage-1",
                content_type="application/json")
    publish_raw(vhost, sub.queue, b'{"specversion": "1.0"}', message_id="garbage-2")
    # parseable, with every attribute present, but of the wrong types: once took the consumer
    # (and every message it held) down in a loop
    publish_raw(vhost, sub.queue, json.dumps({"specversion": "1.0", "id": 7, "source": "/x",
                                              "type": [TYPE], "subject": 3}).encode(),
                message_id="garbage-3")
    ids = emit_many(db, TYPE, 5)

    wait_for(lambda: len(inbox_ids(db, SERVICE)) == len(ids), timeout=30,
             message="the good events to be handled")
    letters = wait_for(lambda: (found if len(found := dlq.list_dead_letters(vhost, sub.dlq))
                                == 3 else None), timeout=30,
                       message="the three malformed messages in the dead-letter queue")
    assert {letter.event_id for letter in letters} == {"garbage-1", "garbage-2", "garbage-3"}
    assert all(letter.error == "rejected by the broker: rejected" for letter in letters)
    assert letters[0].body == b"this is { not json" or letters[1].body == b"this is { not json"
    assert set(inbox_ids(db, SERVICE)) == set(ids)
    assert queue_depth(vhost, sub.queue) == 0
    assert workers.stop() == []


def test_handler_integrity_error_is_retried_and_dead_lettered_not_taken_for_a_duplicate(
        make_dbs, vhost, exchange, workers) -> None:  # type: ignore[no-untyped-def]
    [db] = make_dbs("integrity")
    prefix = unique("i") + "."
    sub = registry.subscription(SERVICE, prefix)
    declare_subscriptions(vhost, exchange, sub)
    taken = str(uuid.uuid4())
    with db.transaction() as s:  # a row the handler will collide with
        s.execute(insert(NOTIFICATIONS).values(
            id=taken, account_id=taken, category="test", title="t", body="b",
            source_event_id="seed", created_at=utcnow()))
    [bad] = emit_many(db, TYPE, 1)
    outcomes: list[str] = []

    def handler(session, event: CloudEvent) -> None:  # type: ignore[no-untyped-def]
        outcomes.append(event.id)
        session.execute(insert(NOTIFICATIONS).values(  # violates the primary key
            id=taken, account_id=taken, category="test", title="t", body="b",
            source_event_id=event.id, created_at=utcnow()))

    before = _outcomes()
    _start(db, vhost, exchange, prefix, workers, handler)

    def decided() -> dict[str, int]:
        now = _outcomes()
        delta = {k: now[k] - before[k] for k in now if now[k] != before[k]}
        return delta

    delta = wait_for(decided, timeout=20, message="the consumer to decide on the event")
    # the handler raised: the event must be retried (then dead-lettered), never skipped as a
    # duplicate nor counted handled; on a busy machine more than one attempt may have been
    # decided by the time the counters are read
    assert set(delta) <= {"retried", "dead_lettered"} and delta.get("retried", 0) >= 1, \
        f"outcome {delta} for a handler that raised"
    assert bad not in inbox_ids(db, SERVICE)
    letters = wait_for(lambda: dlq.list_dead_letters(vhost, sub.dlq), timeout=15,
                       message="the failing event in the dead-letter queue")
    assert [letter.event_id for letter in letters] == [bad]


def _outcomes() -> dict[str, int]:
    return {o: int(REGISTRY.get_sample_value(
        "events_consumed_total", {"service": SERVICE, "type": TYPE, "outcome": o}) or 0)
        for o in ("handled", "duplicate", "ignored", "retried", "dead_lettered", "malformed")}


def test_the_broker_dead_letters_at_least_once(vhost, exchange) -> None:  # type: ignore[no-untyped-def]
    """The queue as the broker holds it: a delivery limit, a dead-letter exchange, and
    at-least-once dead-lettering (a quorum queue's default, at-most-once, drops a dead
    letter the dead-letter queue cannot take)."""
    sub = registry.subscription(SERVICE, unique("s") + ".")
    declare_subscriptions(vhost, exchange, sub)
    name = vhost.rsplit("/", 1)[1]
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", name, "name", "arguments",
                          "--formatter", "json"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    # each argument as [name, type, value]
    queues = {q["name"]: {a[0]: a[-1] for a in q["arguments"]} for q in json.loads(out)}
    args = queues[sub.queue]
    assert args["x-queue-type"] == "quorum" and args["x-delivery-limit"] > 0
    assert args["x-dead-letter-exchange"] and args["x-dead-letter-routing-key"] == sub.dlq
    assert args["x-dead-letter-strategy"] == "at-least-once"
    assert args["x-overflow"] == "reject-publish"
