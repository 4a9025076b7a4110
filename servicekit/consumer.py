"""The event consumer: manual acks, the inbox, bounded retries with delay, dead letters.

Messages are handled in small batches inside **one** database transaction, each in its own
savepoint: the inbox row (consumer, event id) and the handler's writes commit together, and the
messages are acked only after the commit. A crash before the ack redelivers them; the inbox
turns the redelivery into a no-op.

A handler that raises is retried with a growing delay, up to ``max_attempts``, then parked in
the service's dead-letter queue. Both the retry and the dead letter are outbox rows written in
the same transaction as the ack decision, so they inherit the outbox's guarantees and work the
same on RabbitMQ and on kombu's in-memory transport (which has no TTL or dead-lettering).
A message that is not a readable CloudEvent is rejected without requeue: the broker's
dead-letter exchange parks it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kombu import Connection
from kombu import Consumer as KombuConsumer
from kombu.message import Message
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from servicekit import context, metrics
from servicekit.db import Database, utcnow
from servicekit.envelope import CloudEvent, MalformedEvent
from servicekit.outbox import enqueue
from servicekit.publishers import QUEUE
from servicekit.tables import inbox
from servicekit.topology import Subscription, declare, queues_for

log = logging.getLogger(__name__)

Handler = Callable[[Session, CloudEvent], None]
ATTEMPT_HEADER = "x-ecourt-attempt"
ERROR_HEADER = "x-ecourt-error"


class _HandlerFailed(Exception):
    """A handler raised during the fast path: redo the batch one savepoint per event."""


def retry_delay(attempt: int, base: float) -> float:
    """Delay before attempt ``attempt + 1``: base, 4×base, 16×base … capped at an hour."""
    return float(min(3600.0, base * 4 ** max(0, attempt - 1)))


class EventConsumer:
    def __init__(self, service: str, db: Database, handlers: Mapping[str, Handler], *,
                 broker_url: str, exchange: str, subscription: Subscription | None = None,
                 max_attempts: int = 5, retry_base: float = 1.0, prefetch: int = 200,
                 batch_size: int = 100, heartbeat: int = 30) -> None:
        self.service = service
        self.db = db
        self.handlers = dict(handlers)
        self.broker_url = broker_url
        self.exchange = exchange
        self.subscription = subscription or Subscription(service, tuple(sorted(handlers)))
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.prefetch = prefetch
        self.batch_size = batch_size
        self.heartbeat = 0 if broker_url.startswith("memory") else heartbeat
        self._batch: list[Message] = []
        self.ready = threading.Event()

    # -- the loop -----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                self._consume(stop)
                backoff = 0.5
            except Exception as exc:  # connection lost, broker down: reconnect and consume again
                log.warning("consumer %s: %s; reconnecting in %.1fs", self.service, exc, backoff)
                stop.wait(backoff)
                backoff = min(30.0, backoff * 2)

    def _consume(self, stop: threading.Event) -> None:
        with Connection(self.broker_url, heartbeat=self.heartbeat, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
            declare(conn, self.exchange, [self.subscription])
            channel = conn.channel()
            channel.basic_qos(0, self.prefetch, False)
            queue = queues_for(self.subscription, self.exchange)[0](channel)
            consumer = KombuConsumer(channel, queues=[queue], on_message=self._collect,
                                     no_ack=False, auto_declare=False)
            consumer.consume()
            self.ready.set()
            while not stop.is_set():
                self._fill(conn)
                if self._batch:
                    batch, self._batch = self._batch, []
                    self._process_with_retry(batch, conn, stop)
                if self.heartbeat:
                    conn.heartbeat_check()

    def _collect(self, message: Message) -> None:
        self._batch.append(message)

    def _fill(self, conn: Connection) -> None:
        deadline = time.monotonic() + 0.05
        while len(self._batch) < self.batch_size and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.02 if not self._batch else 0.002)
            except TimeoutError:
                if self._batch:
                    return

    def _process_with_retry(self, batch: list[Message], conn: Connection,
                            stop: threading.Event) -> None:
        """The database may be down: keep the batch unacked and try again for a while."""
        for attempt in range(8):
            try:
                self.process(batch)
                return
            except OperationalError as exc:
                log.warning("consumer %s: database unavailable (%s); attempt %s", self.service,
                            exc.__class__.__name__, attempt + 1)
                if self.heartbeat:
                    conn.heartbeat_check()
                stop.wait(min(5.0, 0.25 * 2 ** attempt))
        for message in batch:
            message.requeue()

    # -- one batch ----------------------------------------------------------------------------
    def process(self, batch: list[Message]) -> None:
        """Handle a batch in one transaction, then ack (or reject) each message.

        The fast path runs every handler of the batch in one transaction with one inbox
        look-up. If any handler raises, that transaction is rolled back and the batch is
        handled again one savepoint per event, so one bad event cannot hold back the others.
        """
        parsed = [self._parse(m) for m in batch]
        try:
            outcomes = self._fast(parsed)
        except _HandlerFailed:
            outcomes = self._careful(parsed)
        for message, (outcome, type_) in zip(batch, outcomes, strict=True):
            if outcome == "malformed":
                message.reject(requeue=False)
            else:
                message.ack()
            metrics.EVENTS_CONSUMED.labels(self.service, type_, outcome).inc()

    def _parse(self, message: Message) -> tuple[Message, CloudEvent | None]:
        try:
            return message, CloudEvent.from_json(message.body)
        except MalformedEvent as exc:
            log.error("consumer %s: malformed message rejected: %s", self.service, exc)
            return message, None

    def _seen(self, session: Session, events: list[CloudEvent]) -> set[str]:
        ids = [e.id for e in events]
        if not ids:
            return set()
        return set(session.scalars(select(inbox.c.event_id).where(
            inbox.c.consumer == self.service, inbox.c.event_id.in_(ids))))

    def _triage(self, event: CloudEvent | None, seen: set[str]) -> str | None:
        """The outcome decided before any handler runs, or None when a handler must run."""
        if event is None:
            return "malformed"
        if event.type not in self.handlers:
            return "ignored"
        if event.id in seen:
            return "duplicate"
        return None

    def _fast(self, parsed: list[tuple[Message, CloudEvent | None]]) -> list[tuple[str, str]]:
        outcomes: list[tuple[str, str]] = []
        with self.db.transaction() as session:
            seen = self._seen(session, [e for _, e in parsed if e is not None])
            rows = []
            for _message, event in parsed:
                decided = self._triage(event, seen)
                if decided or event is None:
                    outcomes.append((decided or "malformed", event.type if event else "unknown"))
                    continue
                seen.add(event.id)
                try:
                    with context.bound(event.correlationid, event.id):
                        self.handlers[event.type](session, event)
                except OperationalError:
                    raise
                except Exception as exc:
                    raise _HandlerFailed from exc
                rows.append({"consumer": self.service, "event_id": event.id,
                             "type": event.type, "received_at": utcnow()})
                outcomes.append(("handled", event.type))
            if rows:
                try:
                    session.execute(insert(inbox), rows)
                except IntegrityError as exc:  # another consumer took one meanwhile
                    raise _HandlerFailed from exc
        return outcomes

    def _careful(self, parsed: list[tuple[Message, CloudEvent | None]]) -> list[tuple[str, str]]:
        outcomes: list[tuple[str, str]] = []
        with self.db.transaction() as session:
            seen = self._seen(session, [e for _, e in parsed if e is not None])
            for message, event in parsed:
                decided = self._triage(event, seen)
                if decided or event is None:
                    outcomes.append((decided or "malformed", event.type if event else "unknown"))
                    continue
                seen.add(event.id)
                outcomes.append((self._handle_one(session, message, event), event.type))
        return outcomes

    def _handle_one(self, session: Session, message: Message, event: CloudEvent) -> str:
        """One event in its own savepoint. Only a clash on the *inbox* row is a duplicate; any
        error of the handler (its own unique keys included) is a failure to retry."""
        try:
            with session.begin_nested(), context.bound(event.correlationid, event.id):
                try:
                    with session.begin_nested():
                        session.execute(insert(inbox).values(
                            consumer=self.service, event_id=event.id, type=event.type,
                            received_at=utcnow()))
                except IntegrityError:
                    return "duplicate"
                self.handlers[event.type](session, event)
        except OperationalError:
            raise
        except Exception as exc:
            return self._failed(session, event, message.headers or {}, exc)
        return "handled"

    def _failed(self, session: Session, event: CloudEvent, headers: dict[str, Any],
                exc: Exception) -> str:
        attempt = int(headers.get(ATTEMPT_HEADER, 1))
        error = f"{exc.__class__.__name__}: {exc}"[:500]
        if attempt >= self.max_attempts:
            log.error("consumer %s: event %s (%s) failed %s times, dead-lettered: %s",
                      self.service, event.id, event.type, attempt, error)
            enqueue(session, event, exchange=QUEUE, routing_key=self.subscription.dlq,
                    headers={ATTEMPT_HEADER: attempt, ERROR_HEADER: error,
                             "x-ecourt-failed-at": datetime.now(UTC).isoformat()})
            return "dead_lettered"
        delay = retry_delay(attempt, self.retry_base)
        log.warning("consumer %s: event %s (%s) failed (attempt %s), retry in %.1fs: %s",
                    self.service, event.id, event.type, attempt, delay, error)
        enqueue(session, event, exchange=QUEUE, routing_key=self.subscription.queue,
                headers={ATTEMPT_HEADER: attempt + 1, ERROR_HEADER: error}, delay=delay)
        return "retried"
