"""Shared pieces of the reliability tests: test data, a side-effect handler, a consumer that
counts what it is given, and small SQL and AMQP probes."""

from __future__ import annotations

import collections
import itertools
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pika
from kombu import Connection
from kombu.message import Message
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from servicekit.consumer import EventConsumer
from servicekit.db import Database, utcnow
from servicekit.envelope import CloudEvent
from servicekit.outbox import emit
from servicekit.publishers import Outgoing, Publisher, PublishError
from servicekit.tables import inbox, outbox
from servicekit.testing import TcpProxy, wait_for
from servicekit.topology import Subscription, declare
from services.delivery.models import Notification

ROOT = Path(__file__).resolve().parents[2]
DELIVERY_MIGRATIONS = ROOT / "services" / "delivery" / "migrations"
IDENTITY_MIGRATIONS = ROOT / "services" / "identity" / "migrations"
NOTIFICATIONS = Notification.__table__

# -- test data ------------------------------------------------------------------------------
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_seq = itertools.count(random.randrange(0, 5_000))


def id_number(n: int) -> str:
    """The ``n``-th ID-card number of a series, with a valid GB 11643 check character."""
    body = f"110101{1960 + (n // 1000) % 40}0101{n % 1000:03d}"
    total = sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True))
    return body + _CHECK[total % 11]


def person() -> dict[str, str]:
    """A registration body with a fresh ID number and mobile (1380013xxxx)."""
    n = next(_seq)
    return {"name": "李四", "id_number": id_number(n), "phone": f"1380013{n % 10_000:04d}",
            "password": "correct-horse-battery"}


# -- a handler with a visible side effect ---------------------------------------------------
def record_notification(session: Session, event: CloudEvent) -> None:
    """Write one notifications row for ``event`` in the consumer's transaction. Its id is
    random, so a second run for the same event shows up as a second row."""
    session.execute(insert(NOTIFICATIONS).values(
        id=str(uuid.uuid4()), account_id=str(uuid.uuid4()), category="test",
        title="reliability", body=event.type, source_event_id=event.id, created_at=utcnow()))


# -- counting -------------------------------------------------------------------------------
def count(db: Database, stmt) -> int:  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        return int(s.scalar(stmt) or 0)


def notifications(db: Database) -> tuple[int, int]:
    """(rows, distinct source events) in ``notifications``."""
    with db.transaction() as s:
        rows = s.scalar(select(func.count()).select_from(NOTIFICATIONS)) or 0
        distinct = s.scalar(select(func.count(func.distinct(NOTIFICATIONS.c.source_event_id))))
    return int(rows), int(distinct or 0)


def inbox_ids(db: Database, consumer: str) -> list[str]:
    with db.transaction() as s:
        return list(s.scalars(select(inbox.c.event_id).where(inbox.c.consumer == consumer)))


def unsent(db: Database) -> int:
    return count(db, select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None)))


def emit_many(db: Database, type_: str, n: int, *, per_tx: int = 100) -> list[str]:
    """Emit ``n`` events of ``type_`` through the outbox; returns their ids in order."""
    ids: list[str] = []
    for start in range(0, n, per_tx):
        with db.transaction() as s:
            for i in range(start, min(n, start + per_tx)):
                ids.append(emit(s, type_, {"n": i}, source="/reliability").id)
    return ids


# -- AMQP -----------------------------------------------------------------------------------
def declare_subscriptions(url: str, exchange: str, *subs: Subscription) -> None:
    with Connection(url, connect_timeout=5) as conn:
        declare(conn, exchange, subs)


def queue_depth(url: str, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()


def publish_raw(url: str, queue: str, body: bytes, **props: object) -> None:
    """Publish ``body`` straight to ``queue`` (default exchange), with a confirm."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2, **props),
                              mandatory=True)
    finally:
        conn.close()


def publish_events(publisher: Publisher, exchange_kind: str, routing_key: str,
                   events: list[CloudEvent]) -> list[int]:
    """Publish ``events`` with ``publisher``; returns the confirmed indexes."""
    batch = [Outgoing(i, e.id, exchange_kind, routing_key, e.to_json(), {})
             for i, e in enumerate(events)]
    return publisher.publish_batch(batch).confirmed


class CountingConsumer(EventConsumer):
    """An EventConsumer that counts every delivery it is given, by message id."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.deliveries: collections.Counter[str] = collections.Counter()
        self.redelivered = 0
        self._lock = threading.Lock()

    def _collect(self, message: Message) -> None:
        with self._lock:
            self.deliveries[(message.properties or {}).get("message_id") or ""] += 1
            if (message.delivery_info or {}).get("redelivered"):
                self.redelivered += 1
        super()._collect(message)


@dataclass
class PublishCall:
    started: float
    seconds: float
    confirmed: list[int]
    failed: dict[int, str]
    error: str | None


@dataclass
class TimedPublisher:
    """Wraps a Publisher and records how long each batch took and how it ended."""

    inner: Publisher
    calls: list[PublishCall] = field(default_factory=list)
    in_flight_since: float | None = None

    def publish_batch(self, messages):  # type: ignore[no-untyped-def]
        started = self.in_flight_since = time.monotonic()
        try:
            result = self.inner.publish_batch(messages)
        except PublishError as exc:
            self.calls.append(PublishCall(started, time.monotonic() - started, [], {},
                                          str(exc)))
            raise
        finally:
            self.in_flight_since = None
        self.calls.append(PublishCall(started, time.monotonic() - started,
                                      list(result.confirmed), dict(result.failed), None))
        return result

    def idle(self, seconds: float) -> None:
        self.inner.idle(seconds)

    def close(self) -> None:
        self.inner.close()

    def failures_since(self, moment: float) -> int:
        return sum(1 for c in list(self.calls)
                   if c.started >= moment and (c.error or c.failed))


class MutingProxy(TcpProxy):
    """A TcpProxy that can also mute one direction: after ``mute_replies()`` what the client
    sends still reaches the broker, but nothing the broker answers (confirms, heartbeats)
    comes back: publishes land, their confirms are lost."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.replies_muted = threading.Event()
        super().__init__(target_host, target_port)

    def mute_replies(self) -> None:
        self.replies_muted.set()

    def heal(self) -> None:
        self.replies_muted.clear()
        super().heal()

    def _watched(self, client: socket.socket, upstream: socket.socket) -> list[socket.socket]:
        return [client] if self.replies_muted.is_set() else [client, upstream]


class FreezingProxy(TcpProxy):
    """A TcpProxy whose ``freeze()`` silences the connections open now: they stay open, and
    nothing is forwarded on them either way ever again; connections made later pass."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._frozen: set[socket.socket] = set()
        super().__init__(target_host, target_port)

    def freeze(self) -> None:
        with self._lock:
            self._frozen.update(client for client, _ in self._pairs)

    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return len(self._pairs)

    def _holding(self, client: socket.socket) -> bool:
        return super()._holding(client) or client in self._frozen


def stopped_on_a_silent_line(proxy: FreezingProxy, workers: Workers, grace: float = 15.0) -> float:
    """Freeze the lines open through ``proxy``, then stop ``workers``, as TERM does: the seconds
    the stop took, which must end within ``grace`` (the kill, else) without connecting again."""
    proxy.freeze()
    stopping = time.monotonic()
    assert workers.stop(timeout=grace) == [], "the stop outlasted the grace period"
    stopped_in = time.monotonic() - stopping
    assert proxy.connections() == 1  # it stopped, rather than connect again
    return stopped_in


# -- background threads ---------------------------------------------------------------------
class Workers:
    """Threads that run ``target(stop)``; ``stop()`` ends them and reports any that hang."""

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, name: str, target: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(target=target, args=(self.stop_event,), name=name,
                                  daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self, timeout: float = 15.0) -> list[str]:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self.threads if t.is_alive()]


@contextmanager
def databases(*urls: str) -> Iterator[list[Database]]:
    dbs = [Database(u) for u in urls]
    try:
        yield dbs
    finally:
        for db in dbs:
            db.dispose()


def wait_consumer_ready(consumer: EventConsumer, timeout: float = 15.0) -> None:
    wait_for(consumer.ready.is_set, timeout=timeout, message=f"consumer {consumer.service}")
