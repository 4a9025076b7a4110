"""The event consumer: manual acks, the inbox, bounded retries with delay, dead letters.

Messages are handled in small batches inside **one** database transaction, each in its own
savepoint: the inbox row (consumer, event id) and the handler's writes commit together, and the
messages are acked only after the commit. A crash before the ack redelivers them; the inbox
turns the redelivery into a no-op.

A handler that must ask another service (delivery asks identity for a phone number) is a
``TwoPhaseHandler``: its ``prepare`` makes the remote calls before the batch's transaction
begins, with no database connection held, and only its ``apply`` runs in the transaction. A slow
service then holds up this consumer's thread alone, never a pooled connection nor, on SQLite,
the write lock that every other writer of the service waits for. The ``prepare`` of a batch's
events run at once, on at most ``ECOURT_CONSUMER_PREPARE_THREADS`` threads (default 8) shared
by the consumer's workers: one after the other, a batch of 100 events whose service answers in
50 ms waited 5 s before its transaction, and the whole queue with it. Their results go to
``apply`` in the batch's order, so the transactions and each subject's order are unchanged. A
``prepare`` that makes several independent calls can make them at once too, on the same threads
and within the same bound (``concurrently``).

A handler that raises is retried with a growing delay, up to ``max_attempts``, then parked in
the service's dead-letter queue. Both the retry and the dead letter are outbox rows written in
the same transaction as the ack decision, so they inherit the outbox's guarantees and work the
same on RabbitMQ and on kombu's in-memory transport (which has no TTL or dead-lettering).
A message that is not a readable CloudEvent is rejected without requeue: the broker's
dead-letter exchange parks it. A database that cannot be reached (``database_unreachable``: a
restart, a cut line, the pool's wait, a busy SQLite file) is not the event's fault: the batch
is tried again in place, with backoff, for as long as the outage lasts, and no attempt is
charged to its events. It is never handed back to the broker for that: every return counts
towards the quorum queue's delivery limit, so a long outage would dead-letter healthy events.
A statement that fails on a working database (a deadlock, a serialization failure, a
timeout: ``statement_failed``) is the event's own failure, retried with delay like any other.

The connection's thread only reads and acks; a batch is handled on a worker thread, so the next
batch arrives from the broker while the database works on this one (the database wait and the
socket reads overlap). One batch is handled at a time, so events keep their queue order. With
``workers`` > 1 (PostgreSQL only) a batch is split by the event's subject (its case or aggregate)
into that many parts, each in its own transaction on its own thread: events of one subject stay
in one part, in order; events without a subject have no order to keep.

The line to the broker can die silently: a proxy or load balancer that stops forwarding but
keeps the TCP connection open and acknowledged, so TCP never notices. py-amqp waits for the
broker's answers (declarations, ``basic_qos``, the Close-OK of a graceful close) on a blocking
socket, so the socket gets read and write timeouts (two heartbeat intervals: a live broker
sends something within one). The heartbeats notice the silence while consuming; after any
error the connection is dropped without the close handshake (the broker requeues what was
not acked) and the consumer connects again. Only a clean stop closes politely, so that the
last acks reach the broker, and for at most ``CLOSE_WITHIN`` seconds: on a dead line each step
of the close (channel, then connection) would wait a read timeout (two minutes in all with the
default heartbeat, longer than Kubernetes' 30 s grace; for ever had it died in the middle of a
frame, where py-amqp retries a timed-out read), so the socket is then shut down and dropped.
Nothing is lost by that: what was not acked comes back to the queue.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from kombu import Connection
from kombu import Consumer as KombuConsumer
from kombu.message import Message
from sqlalchemy import String, any_, bindparam, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from servicekit import context, metrics
from servicekit.config import env_int
from servicekit.db import Database, database_unreachable, statement_failed, utcnow
from servicekit.envelope import CloudEvent, MalformedEvent
from servicekit.logs import scrub
from servicekit.outbox import enqueue
from servicekit.publishers import QUEUE
from servicekit.tables import inbox
from servicekit.topology import Subscription, declare, queues_for

log = logging.getLogger(__name__)

Handler = Callable[[Session, CloudEvent], None]
C = TypeVar("C")
T = TypeVar("T")
R = TypeVar("R")
Parsed = tuple[Message, CloudEvent | None]
#: (outcome, event type) of one message: handled, duplicate, ignored, retried, dead_lettered,
#: malformed
Outcome = tuple[str, str]
ATTEMPT_HEADER = "x-ecourt-attempt"
ERROR_HEADER = "x-ecourt-error"
#: the inbox look-up of a batch on PostgreSQL (``IN`` would compile anew for each batch size)
_SEEN_PG = select(inbox.c.event_id).where(
    inbox.c.consumer == bindparam("consumer"),
    inbox.c.event_id == any_(bindparam("ids", type_=ARRAY(String))))
#: how long the connection's thread may go without reading the socket while it waits for a
#: batch (the broker's heartbeats must be read well within the heartbeat interval)
_READ_EVERY = 1.0
#: the first and the longest wait between tries of a batch whose database is unreachable
OUTAGE_BACKOFF = (0.25, 5.0)
#: how long one read or write on the broker's socket may block when heartbeats are off
_SOCKET_TIMEOUT = 30.0
#: how long a stop may spend closing the broker connection politely (the deployments' grace
#: periods count on it, tests/test_deploy_files.py)
CLOSE_WITHIN = 3.0
#: the setting for how many ``prepare`` calls (and the calls they make ``concurrently``) one
#: consumer makes at once, and its default: enough to overlap a batch's look-ups, few enough
#: not to flood the service asked, and within requests' ten pooled connections per host (more
#: would open and drop a connection each time)
PREPARE_THREADS = "ECOURT_CONSUMER_PREPARE_THREADS"
DEFAULT_PREPARE_THREADS = 8
#: the consumer's prepare threads, while one of them runs a ``prepare`` (``concurrently``)
_prepare_pool: contextvars.ContextVar[ThreadPoolExecutor | None] = contextvars.ContextVar(
    "prepare_pool", default=None)


class TwoPhaseHandler(Generic[C]):
    """A handler in two phases, for one that needs another service's answer.

    ``prepare(event)`` runs first, outside any transaction and with no database connection
    checked out: the place for HTTP calls to other services (each bounded by its client's
    timeout, however slow the other service is). What it returns, the context, is handed to
    ``apply(session, event, context)``, which runs in the consumer's transaction beside the
    inbox row, exactly as a plain handler does. ``prepare`` must not write anything the
    transaction's rollback should take back: it runs again on every retry of the event.

    The consumer looks the batch's events up in the inbox before preparing them, so an event
    already handled (a redelivery) is not prepared at all; one handled by another consumer
    between that look-up and the transaction costs one wasted ``prepare`` and is then a
    duplicate. An exception of ``prepare`` is raised in the handler's place inside the
    transaction: it is retried and dead-lettered exactly as an exception of a plain handler.

    The consumer runs the ``prepare`` of a batch's events at once, each on one of its prepare
    threads, so ``prepare`` must be safe to call from several threads (an HTTP client is); its
    context is still handed to ``apply`` in the batch's order, one transaction as before. Its
    own independent calls (one per recipient) it can make at once with ``concurrently``.

    Called like a plain handler (``handler(session, event)``: tests, tools, benchmarks) it runs
    both phases in turn, the remote calls inside the caller's transaction; the consumer never
    calls it so.
    """

    def __init__(self, prepare: Callable[[CloudEvent], C],
                 apply: Callable[[Session, CloudEvent, C], None]) -> None:
        self.prepare = prepare
        self.apply = apply

    def __call__(self, session: Session, event: CloudEvent) -> None:
        self.apply(session, event, self.prepare(event))


def concurrently(call: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[call(item) for item in items]``, the calls made at once when a consumer's ``prepare``
    makes them: for independent look-ups (one per recipient, one per combined handler).

    They run on the consumer's prepare threads, so its bound holds for every call it makes,
    however many events and look-ups (``PREPARE_THREADS``). The calling thread, itself one of
    them, makes each call no idle thread has taken yet: a call never waits for a free thread,
    and calls made ``concurrently`` inside calls made so cannot deadlock. Anywhere else (the
    handler called plainly: tests, tools) the calls are made in turn. The results come in
    ``items``' order; if any call raised, the first one's exception in that order is raised,
    once every call has ended."""
    items = list(items)
    pool = _prepare_pool.get()
    if pool is None or len(items) < 2:
        return [call(item) for item in items]
    calls = [_Call(call, item) for item in items]
    for later in calls[1:]:
        pool.submit(later.take)
    for each in calls:  # the first, then whatever no thread has taken yet
        each.take()
    return [each.result() for each in calls]


class _Call(Generic[T, R]):
    """One call of ``concurrently``, made by whichever thread takes it first (in a copy of the
    caller's context: the event's ids, the prepare threads)."""

    def __init__(self, call: Callable[[T], R], item: T) -> None:
        self._context = contextvars.copy_context()
        self._call, self._item = call, item
        self._taken = threading.Lock()
        self._ended = threading.Event()
        self._value: R | None = None
        self._error: BaseException | None = None

    def take(self) -> None:
        if not self._taken.acquire(blocking=False):
            return  # made, or being made, by another thread
        try:
            self._value = self._context.run(self._call, self._item)
        except BaseException as exc:  # raised in the caller's thread, by ``result``
            self._error = exc
        finally:
            self._ended.set()

    def result(self) -> R:
        self._ended.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


@dataclass
class _Prepared:
    """What the prepare phase of a batch (or part) found: the events the inbox already held
    then, and the context or the exception of each two-phase handler's ``prepare``."""

    seen: set[str] = field(default_factory=set)
    contexts: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, Exception] = field(default_factory=dict)

    def context_of(self, event_id: str) -> Any:
        """The context ``prepare`` returned for the event; its exception, raised here, when
        it failed (so the transaction sees the failure where the handler would run)."""
        if event_id in self.failures:
            raise self.failures[event_id]
        if event_id not in self.contexts:  # the triage makes it a duplicate before this
            raise LookupError(f"event {event_id} was not prepared")
        return self.contexts[event_id]


class _HandlerFailed(Exception):
    """A handler raised during the fast path: redo the batch one savepoint per event."""


class _InFlight:
    """A batch being handled on the worker threads: one future per part."""

    def __init__(self, batch: list[Message], parts: list[tuple[list[int], Future]],
                 give_up: threading.Event) -> None:
        self.batch = batch
        self.parts = parts
        #: set when the batch can no longer be acked (the consumer stops, or its connection
        #: is gone): a part waiting for its database gives the batch back instead
        self.give_up = give_up

    def done(self) -> bool:
        return all(future.done() for _, future in self.parts)

    def wait(self, timeout: float | None) -> bool:
        wait_all([future for _, future in self.parts], timeout=timeout)
        return self.done()

    def outcomes(self) -> list[Outcome] | None:
        """Outcomes in the batch's order, or None when a part could not reach the database
        (the whole batch goes back to the queue; what did commit is a duplicate next time)."""
        merged: list[Outcome | None] = [None] * len(self.batch)
        for indices, future in self.parts:
            got = future.result()
            if got is None:
                return None
            for index, outcome in zip(indices, got, strict=True):
                merged[index] = outcome
        return merged  # type: ignore[return-value]


def _outage(exc: BaseException) -> bool:
    """The database is away (wait for it), as against a failure of the event's own."""
    return database_unreachable(exc) and not statement_failed(exc)


def _socket_of(conn: Connection) -> socket.socket | None:
    """The connection's socket (py-amqp's), if it is open; the in-memory transport has none."""
    if not conn.connected:  # asking for ``conn.connection`` would connect again
        return None
    return getattr(getattr(conn.connection, "transport", None), "sock", None)


def _shut(sock: socket.socket) -> None:
    """End any read or write blocked on ``sock``, whichever thread waits in it."""
    with contextlib.suppress(OSError):  # closed meanwhile: nothing is blocked on it
        sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def shut_after(sock: socket.socket | None, seconds: float) -> Iterator[None]:
    """Shut ``sock`` down should the block last longer than ``seconds``, which ends whatever
    read, write or poll on it the block waits in (one bound, however many steps the block
    takes); no socket, no bound. Used by every close of a broker connection that may be dead."""
    timer = threading.Timer(seconds, _shut, (sock,)) if sock is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()


def close_within(conn: Connection, seconds: float) -> None:
    """Close ``conn`` politely, but for at most about ``seconds``: past them its socket is shut
    down, which ends the wait for the broker's Close-OK however py-amqp waits for it, and the
    connection is dropped."""
    with shut_after(_socket_of(conn), seconds):
        try:
            conn.release()
        except Exception as exc:  # the line is gone: drop it, as after any error
            log.warning("consumer: closing the broker connection failed (%s); dropped",
                        exc.__class__.__name__)
            with contextlib.suppress(Exception):
                conn.collect()


def attempt_of(headers: Mapping[str, Any]) -> int:
    """The attempt a delivery is (1 for the first); a header that is not a number counts as
    the first, rather than failing the consumer on a message someone else wrote."""
    try:
        return max(1, int(headers.get(ATTEMPT_HEADER, 1)))
    except (TypeError, ValueError):
        return 1


def retry_delay(attempt: int, base: float) -> float:
    """Delay before attempt ``attempt + 1``: base, 4×base, 16×base … capped at an hour."""
    return float(min(3600.0, base * 4 ** max(0, attempt - 1)))


class EventConsumer:
    def __init__(self, service: str, db: Database, handlers: Mapping[str, Handler], *,
                 broker_url: str, exchange: str, subscription: Subscription | None = None,
                 max_attempts: int = 5, retry_base: float = 1.0, prefetch: int = 200,
                 batch_size: int = 100, heartbeat: int = 30, workers: int = 1,
                 prepare_threads: int | None = None) -> None:
        """``prepare_threads``: the most ``prepare`` calls made at once; by default the
        setting ``PREPARE_THREADS``, read here so that a bad value stops the process at its
        start with a ``ConfigError`` naming it."""
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
        # SQLite takes one writer at a time: more parts would only queue for its lock
        self.workers = max(1, workers) if db.is_postgres else 1
        if prepare_threads is None:
            prepare_threads = env_int(PREPARE_THREADS, DEFAULT_PREPARE_THREADS, minimum=1)
        if prepare_threads < 1:
            raise ValueError(f"prepare_threads must be at least 1, not {prepare_threads}")
        self.prepare_threads = prepare_threads
        #: the prepare threads while the consumer runs (None: ``prepare`` runs in turn)
        self._preparing: ThreadPoolExecutor | None = None
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
                # the class too: a read timeout's message is empty
                log.warning("consumer %s: %s: %s; reconnecting in %.1fs", self.service,
                            exc.__class__.__name__, exc, backoff)
                stop.wait(backoff)
                backoff = min(30.0, backoff * 2)

    def _consume(self, stop: threading.Event) -> None:
        # messages read on a connection that is gone cannot be acked on the new one (the
        # broker gives them to us again): trying kept the consumer failing forever
        self._batch = []
        conn = Connection(self.broker_url, heartbeat=self.heartbeat, connect_timeout=5,
                          transport_options=self._socket_timeouts())
        try:
            conn.ensure_connection(max_retries=1)
            declare(conn, self.exchange, [self.subscription])
            channel = conn.channel()
            channel.basic_qos(0, self.prefetch, False)
            queue = queues_for(self.subscription, self.exchange)[0](channel)
            consumer = KombuConsumer(channel, queues=[queue], on_message=self._collect,
                                     no_ack=False, auto_declare=False)
            consumer.consume()
            # the prepare threads outlive the workers that wait for them; both are joined
            # on the way out (a prepare thread starts only when a batch needs one)
            with ThreadPoolExecutor(self.prepare_threads,
                                    thread_name_prefix=f"prepare-{self.service}") as preparing:
                self._preparing = preparing
                try:
                    with ThreadPoolExecutor(self.workers,
                                            thread_name_prefix=f"consume-{self.service}") as pool:
                        self.ready.set()
                        self._loop(conn, pool, stop)
                finally:
                    self._preparing = None
        except BaseException:
            # The line may be dead: a graceful close (``release``, ``__exit__``) would wait
            # for the broker's Close-OK on it. Drop the socket instead; the broker requeues
            # whatever was not acked.
            with contextlib.suppress(Exception):
                conn.collect()
            raise
        # a clean stop: close politely so that the last acks reach the broker, within bounds
        # (the line may have died just now)
        close_within(conn, CLOSE_WITHIN)

    def _socket_timeouts(self) -> dict[str, float]:
        """py-amqp's ``read_timeout`` and ``write_timeout``: without them its socket blocks
        for ever outside ``drain_events(timeout=...)`` (which sets its own timeout and is
        unaffected). Two heartbeat intervals: a live broker sends at least a heartbeat within
        one, however long it takes to answer. The in-memory transport has no socket."""
        if self.broker_url.startswith("memory"):
            return {}
        seconds = 2.0 * self.heartbeat if self.heartbeat else _SOCKET_TIMEOUT
        return {"read_timeout": seconds, "write_timeout": seconds}

    def _loop(self, conn: Connection, pool: ThreadPoolExecutor, stop: threading.Event) -> None:
        """Read the next batch while the workers handle this one; ack it when they are done.

        Kombu's connection is not thread-safe: reads, acks and heartbeats stay on this thread.
        """
        running: _InFlight | None = None
        last_read = time.monotonic()
        try:
            while not stop.is_set():
                if running is not None and running.done():
                    self.settle(running.batch, running.outcomes())
                    running = None
                if running is None and self._batch:
                    # at most a batch: one read can bring more (the notifier takes one
                    # event per transaction, and means it)
                    batch = self._batch[:self.batch_size]
                    self._batch = self._batch[self.batch_size:]
                    running = self._start(batch, pool, stop)
                if running is None or len(self._batch) < self.batch_size \
                        or time.monotonic() - last_read > _READ_EVERY:
                    self._fill(conn, quick=running is not None)
                    last_read = time.monotonic()
                else:  # the next batch is full: wait for the workers, not for the socket
                    running.wait(0.05)
                if self.heartbeat:
                    conn.heartbeat_check()
        finally:
            if running is not None:
                # Let the workers finish their transactions. On a clean stop the batch is
                # acked; after a lost connection it cannot be, and comes back as duplicates.
                # A part waiting out a database outage stops waiting: the broker gives the
                # batch again to whoever consumes next, so the reconnect need not wait.
                running.give_up.set()
                running.wait(None)
                if stop.is_set():
                    self.settle(running.batch, running.outcomes())

    def _collect(self, message: Message) -> None:
        self._batch.append(message)

    def _fill(self, conn: Connection, quick: bool = False) -> None:
        """Read until a batch is full or 50 ms have passed. ``quick``: a batch is being handled,
        so come back every few milliseconds to ack it as soon as it is done."""
        if quick:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.005)
            return
        deadline = time.monotonic() + 0.05
        while len(self._batch) < self.batch_size and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.02 if not self._batch else 0.002)
            except TimeoutError:
                if self._batch:
                    return

    def _start(self, batch: list[Message], pool: ThreadPoolExecutor,
               stop: threading.Event) -> _InFlight:
        parsed = [self._parse(m) for m in batch]
        parts: list[tuple[list[int], Future]] = []
        give_up = threading.Event()
        if stop.is_set():
            give_up.set()
        for indices in self._partition(parsed):
            future = pool.submit(self.handle, [parsed[i] for i in indices], give_up)
            parts.append((indices, future))
        return _InFlight(batch, parts, give_up)

    def _partition(self, parsed: list[Parsed]) -> list[list[int]]:
        """Indices of the batch per part: one subject's events always in the same part."""
        if self.workers == 1:
            return [list(range(len(parsed)))]
        parts: list[list[int]] = [[] for _ in range(self.workers)]
        for index, (_message, event) in enumerate(parsed):
            key = (event.subject or event.id) if event is not None else ""
            parts[zlib.crc32(key.encode()) % self.workers].append(index)
        return [p for p in parts if p]

    # -- one batch ----------------------------------------------------------------------------
    def handle(self, parsed: list[Parsed], stop: threading.Event) -> list[Outcome] | None:
        """Handle (part of) a batch in one transaction: outcomes in order, or None when
        ``stop`` is set (the consumer stops, or the connection the batch came on is gone)
        while its database is unreachable: the batch goes back to the queue.

        The ``prepare`` of two-phase handlers runs first, outside any transaction; both paths
        below use what it found. The fast path runs every handler in one transaction with one
        inbox look-up. If any handler raises, that transaction is rolled back and the events
        are handled again one savepoint each, so one bad event cannot hold back the others.
        While the database cannot be reached the batch waits here, however long that takes
        (see the module's docstring); the connection's thread goes on reading heartbeats
        meanwhile.
        """
        first, longest = OUTAGE_BACKOFF
        tries = 0
        while True:
            try:
                # again on each try: what was looked up before an outage may be stale after it
                prepared = self._prepare(parsed)
                try:
                    return self._fast(parsed, prepared)
                except _HandlerFailed:
                    return self._careful(parsed, prepared)
            except Exception as exc:
                if not database_unreachable(exc):
                    raise
                if stop.is_set():
                    return None
                tries += 1
                log.warning("consumer %s: database unavailable (%s); try %s", self.service,
                            exc.__class__.__name__, tries)
                stop.wait(min(longest, first * 2 ** min(tries - 1, 16)))

    def settle(self, batch: list[Message], outcomes: list[Outcome] | None) -> None:
        """Ack (or reject) each message once its transaction has committed; requeue the batch
        when it could not be handled. Runs on the connection's thread."""
        if outcomes is None:
            for message in batch:
                message.requeue()
            return
        acked: list[Message] = []
        for message, (outcome, type_) in zip(batch, outcomes, strict=True):
            if outcome == "malformed":
                message.reject(requeue=False)
            else:
                acked.append(message)
            metrics.EVENTS_CONSUMED.labels(self.service, type_, outcome).inc()
        self._ack(acked)

    def _ack(self, messages: list[Message]) -> None:
        """On RabbitMQ one ``multiple`` ack covers the batch: every earlier delivery on this
        channel is settled already (batches are settled in order, rejects go first), and the
        next batch's deliveries have higher tags. Kombu's in-memory transport acks one by one."""
        if not messages:
            return
        if not self.broker_url.startswith("memory"):
            max(messages, key=lambda m: m.delivery_tag).ack(multiple=True)
            return
        for message in messages:
            message.ack()

    def _parse(self, message: Message) -> Parsed:
        try:
            return message, CloudEvent.from_json(message.body)
        except MalformedEvent as exc:
            log.error("consumer %s: malformed message rejected: %s", self.service, exc)
            return message, None

    def _seen(self, session: Session, events: list[CloudEvent]) -> set[str]:
        ids = [e.id for e in events]
        if not ids:
            return set()
        if self.db.is_postgres:  # one array parameter: one cached statement for every size
            return set(session.scalars(_SEEN_PG, {"consumer": self.service, "ids": ids}))
        return set(session.scalars(select(inbox.c.event_id).where(
            inbox.c.consumer == self.service, inbox.c.event_id.in_(ids))))

    def _prepare(self, parsed: list[Parsed]) -> _Prepared:
        """Run the ``prepare`` of every two-phase handler of the batch, before its transaction.

        The inbox is read first, in a read-only transaction (on SQLite it takes no write lock)
        whose connection is back in the pool before any ``prepare`` runs: an event already
        handled is not prepared. A batch without two-phase handlers reads nothing here and
        touches no prepare thread. The others' ``prepare`` run at once on the prepare threads
        (in turn when the consumer is not running: ``handle`` called directly), each event once
        however often the batch holds it; this thread waits for them all. The exception of a
        ``prepare`` is kept, not raised: ``_run`` raises it inside the transaction, where it is
        charged to its event alone, as a handler's exception is."""
        todo: dict[str, tuple[CloudEvent, TwoPhaseHandler[Any]]] = {}
        for _message, event in parsed:
            handler = self.handlers.get(event.type) if event is not None else None
            if event is not None and isinstance(handler, TwoPhaseHandler):
                todo.setdefault(event.id, (event, handler))  # twice in the batch: once
        if not todo:
            return _Prepared()
        with self.db.transaction(reads_only=True) as session:
            prepared = _Prepared(seen=self._seen(session, [e for e, _ in todo.values()]))
        due = [(event, handler) for event, handler in todo.values()
               if event.id not in prepared.seen]  # handled already: a redelivery
        pool = self._preparing
        if pool is None:
            results = [self._prepare_one(event, handler, None) for event, handler in due]
        else:
            futures = [pool.submit(self._prepare_one, event, handler, pool)
                       for event, handler in due]
            results = [future.result() for future in futures]
        for (event, _handler), (found, failure) in zip(due, results, strict=True):
            if failure is not None:
                prepared.failures[event.id] = failure
            else:
                prepared.contexts[event.id] = found
        return prepared

    @staticmethod
    def _prepare_one(event: CloudEvent, handler: TwoPhaseHandler[Any],
                     pool: ThreadPoolExecutor | None) -> tuple[Any, Exception | None]:
        """One event's ``prepare``, under its ids, with the prepare threads at hand for the
        calls it makes ``concurrently``: (context, None), or (None, its exception)."""
        lent = _prepare_pool.set(pool)
        try:
            with context.bound(event.correlationid, event.id):
                return handler.prepare(event), None
        except Exception as exc:
            return None, exc
        finally:
            _prepare_pool.reset(lent)

    def _run(self, session: Session, event: CloudEvent, prepared: _Prepared) -> None:
        """The event's handler in the transaction: a two-phase one gets its context."""
        handler = self.handlers[event.type]
        if isinstance(handler, TwoPhaseHandler):
            handler.apply(session, event, prepared.context_of(event.id))
        else:
            handler(session, event)

    def _triage(self, event: CloudEvent | None, seen: set[str]) -> str | None:
        """The outcome decided before any handler runs, or None when a handler must run."""
        if event is None:
            return "malformed"
        if event.type not in self.handlers:
            return "ignored"
        if event.id in seen:
            return "duplicate"
        return None

    def _fast(self, parsed: list[Parsed], prepared: _Prepared) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with self.db.transaction() as session:
            # what the inbox held before the prepare phase counts too: it was not prepared
            seen = self._seen(session, [e for _, e in parsed if e is not None]) | prepared.seen
            rows = []
            for _message, event in parsed:
                decided = self._triage(event, seen)
                if decided or event is None:
                    outcomes.append((decided or "malformed", event.type if event else "unknown"))
                    continue
                seen.add(event.id)
                try:
                    with context.bound(event.correlationid, event.id):
                        self._run(session, event, prepared)
                        # written now, under the event's ids: what the handler changed and
                        # the audit entries those changes make (``servicekit.audit``)
                        session.flush()
                except Exception as exc:
                    if _outage(exc):
                        raise  # the database's fault, not the event's: ``handle`` waits
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

    def _careful(self, parsed: list[Parsed], prepared: _Prepared) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with self.db.transaction() as session:
            seen = self._seen(session, [e for _, e in parsed if e is not None]) | prepared.seen
            for message, event in parsed:
                decided = self._triage(event, seen)
                if decided or event is None:
                    outcomes.append((decided or "malformed", event.type if event else "unknown"))
                    continue
                seen.add(event.id)
                outcomes.append((self._handle_one(session, message, event, prepared),
                                 event.type))
        return outcomes

    def _handle_one(self, session: Session, message: Message, event: CloudEvent,
                    prepared: _Prepared) -> str:
        """One event in its own savepoint. Only a clash on the *inbox* row is a duplicate; any
        error of the handler (its own unique keys included) is a failure to retry."""
        try:
            # the ids outermost: the savepoint's flush (and the audit entries it writes) is
            # made while they are bound
            with context.bound(event.correlationid, event.id), session.begin_nested():
                try:
                    with session.begin_nested():
                        session.execute(insert(inbox).values(
                            consumer=self.service, event_id=event.id, type=event.type,
                            received_at=utcnow()))
                except IntegrityError:
                    return "duplicate"
                self._run(session, event, prepared)
        except Exception as exc:
            if _outage(exc):
                raise  # no attempt is charged to an event for the database's outage
            return self._failed(session, event, message.headers or {}, exc)
        return "handled"

    def _failed(self, session: Session, event: CloudEvent, headers: dict[str, Any],
                exc: Exception) -> str:
        attempt = attempt_of(headers)
        # masked before it is cut: the error travels in the message's headers and the logs,
        # and a cut could leave the tail of an ID number no pattern recognises
        error = scrub(f"{exc.__class__.__name__}: {exc}")[:500]
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
