"""Publishing outbox rows with publisher confirms: one small interface, two implementations.

* ``PikaPublisher`` keeps many confirms outstanding (a window), so a batch of hundreds costs
  about one round trip; it is what the relay uses on RabbitMQ. Waiting for each confirm, as
  kombu's ``confirm_publish`` does, caps a publisher at roughly 1,000 msg/s.
* ``KombuPublisher`` publishes one message at a time through kombu; it serves the embedded
  tier's in-memory transport (and works on AMQP too, with ``confirm_publish``).

Both publish with ``mandatory=True``: a message that reached no queue comes back as a return
and counts as a failure (RELIABILITY R2), never as success.

A message that cannot be published as it is (a message id or routing key over AMQP's 255
bytes; on pika, properties larger than a frame) is a failure of that row alone, found before
anything is written, never an exception for its batch: the relay gives the row its own
backoff and the rows after it go out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

log = logging.getLogger(__name__)

TOPIC = "topic"  # to the suite's topic exchange, routing key = event type
QUEUE = "queue"  # straight to one queue through the default exchange


class PublishError(Exception):
    """The broker could not be reached or did not confirm in time; every row stays unsent.

    ``unreachable``: no connection could be made, so nothing was written. ``suspect``: the
    channel or connection closed under the batch (the broker closed it, or the stream broke),
    not a timeout, a blocked connection or a broker shutting down, so a message of the batch
    may be what the broker refused; the relay then publishes the batch's first row alone, and
    refuses that row if it fails again alone (``Relay``)."""

    def __init__(self, message: str, *, unreachable: bool = False,
                 suspect: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable
        self.suspect = suspect


class Unpublishable(ValueError):
    """A message that cannot be published as it is: a failure of its row, not of the batch."""


class Outgoing(NamedTuple):
    """One outbox row to publish (a tuple: the relay makes thousands a second)."""

    row_id: int
    event_id: str
    kind: str
    routing_key: str
    body: str
    headers: dict[str, Any]


@dataclass
class BatchResult:
    confirmed: list[int]
    failed: dict[int, str]  # row id -> reason (nack, returned as unroutable)


#: AMQP's short strings (message id, routing key) hold at most 255 bytes
SHORT_STRING_MAX = 255


def unpublishable(m: Outgoing) -> str | None:
    """Why ``m`` cannot be published on AMQP, checked before anything is written, or None."""
    if len(m.event_id.encode("utf-8")) > SHORT_STRING_MAX:
        return (f"unpublishable: message id of {len(m.event_id.encode('utf-8'))} bytes "
                f"(AMQP allows {SHORT_STRING_MAX})")
    if len(m.routing_key.encode("utf-8")) > SHORT_STRING_MAX:
        return (f"unpublishable: routing key of {len(m.routing_key.encode('utf-8'))} bytes "
                f"(AMQP allows {SHORT_STRING_MAX})")
    return None


class Publisher(Protocol):
    #: rows per relay batch that suit this publisher (see each implementation)
    preferred_batch: int

    def publish_batch(self, messages: Sequence[Outgoing]) -> BatchResult: ...
    def idle(self, seconds: float) -> None: ...
    def close(self) -> None: ...


def _exchange_for(message: Outgoing, topic_exchange: str) -> str:
    return topic_exchange if message.kind == TOPIC else ""


#: why a message that reached no queue failed (RELIABILITY R2)
UNROUTABLE = "unroutable: no queue bound for this routing key"


def _bound(channel: Any, exchange: str, routing_key: str) -> bool:
    """Whether kombu's virtual transport (``memory``) holds a queue for this message: a
    binding of ``exchange`` that matches ``routing_key`` (the lookup its ``deliver`` makes),
    or, through the default exchange, the queue named ``routing_key``."""
    if not exchange:
        return bool(channel._has_queue(routing_key))
    try:
        table = channel.get_table(exchange)
    except KeyError:  # no such exchange: nothing bound
        return False
    queues = channel.typeof(exchange).lookup(table, exchange, routing_key, None)
    return any(q and q != channel.deadletter_queue for q in queues)


class KombuPublisher:
    """One message at a time; confirms (on AMQP) waited for per message by kombu.

    The ``memory`` transport has no confirms, no ``mandatory`` and no returns: a message
    nobody is bound to would vanish and count as published. There the publisher looks the
    bindings up in the transport first and reports such a message as failed (unroutable), as
    a return is on RabbitMQ (RELIABILITY R2).
    """

    #: small batches: the relay holds its claim (on SQLite, the write lock) while publishing
    preferred_batch = 200

    def __init__(self, url: str, exchange: str, confirm_timeout: float = 5.0) -> None:
        from kombu import Connection

        self.exchange = exchange
        self.confirm_timeout = confirm_timeout
        self.connection = Connection(url, transport_options={"confirm_publish": True},
                                     connect_timeout=5)
        self._producer = None
        self._returned: dict[str, str] = {}
        self._memory = self.connection.transport_cls.startswith("memory")

    def _get_producer(self):  # type: ignore[no-untyped-def]
        from kombu import Producer

        if self._producer is None:
            self.connection.ensure_connection(max_retries=1)
            self._producer = Producer(self.connection.channel(), on_return=self._on_return)
        return self._producer

    def _on_return(self, exception, exchange, routing_key, message):  # type: ignore[no-untyped-def]
        message_id = (message.properties or {}).get("message_id", "")
        self._returned[message_id] = f"unroutable: {routing_key}"

    def publish_batch(self, messages: Sequence[Outgoing]) -> BatchResult:
        result = BatchResult([], {})
        try:
            producer = self._get_producer()
        except Exception as exc:
            self.close()
            raise PublishError(f"connect failed: {exc!r}", unreachable=True) from exc
        memory = self._memory
        try:
            for m in messages:
                exchange = _exchange_for(m, self.exchange)
                reason = unpublishable(m)
                if reason is None and memory and not _bound(producer.channel, exchange,
                                                            m.routing_key):
                    reason = UNROUTABLE
                if reason:
                    result.failed[m.row_id] = reason
                    continue
                producer.publish(
                    m.body, exchange=exchange, routing_key=m.routing_key,
                    content_type="application/cloudevents+json", content_encoding="utf-8",
                    headers=m.headers, message_id=m.event_id, delivery_mode=2,
                    mandatory=not memory, retry=False, timeout=self.confirm_timeout,
                    confirm_timeout=self.confirm_timeout,
                )
                reason = self._returned.pop(m.event_id, None)
                if reason:
                    result.failed[m.row_id] = reason
                else:
                    result.confirmed.append(m.row_id)
        except Exception as exc:  # connection-level: nothing after this point is known sent
            self.close()
            if result.confirmed or result.failed:
                return result  # the rest stays unsent, untouched
            # a timeout says nothing about the message; a closed channel or connection may
            raise PublishError(str(exc) or repr(exc),
                               suspect=not isinstance(exc, TimeoutError)) from exc
        return result

    def idle(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        self._producer = None
        with contextlib.suppress(Exception):  # closing a broken connection may itself fail
            self.connection.release()


class Ticket:
    """One batch written by ``PikaPublisher.send`` whose confirms are still being counted.

    Its delivery tags are contiguous (``first``…``first + pending - 1``) on the connection of
    ``generation``; a ticket of an earlier connection can never be confirmed any more. Rows
    that could not be published at all (``unpublishable``) got no tag: they are in
    ``refused`` from the start.
    """

    __slots__ = ("by_message", "confirmed", "failed", "first", "generation", "pending",
                 "refused", "rows")

    def __init__(self, rows: list[int], first: int, generation: int) -> None:
        self.rows = rows
        self.first = first
        self.generation = generation
        self.pending = len(rows)
        self.confirmed: list[int] = []
        self.failed: dict[int, str] = {}
        #: rows refused before anything was written (no delivery tag) -> why
        self.refused: dict[int, str] = {}
        #: (message id, exchange, routing key) -> its tags, to place a Basic.Return
        self.by_message: dict[tuple[str, str, str], list[int]] = {}


#: the content header of a message, as AMQP 0-9-1 lays it out (class 60, weight 0, body size,
#: property flags); the properties follow in flag order
_HEADER = struct.Struct(">HHQH")
_FRAME = struct.Struct(">BHI")  # frame type, channel, payload size
_FRAME_END = b"\xce"
_CONTENT_TYPE = b"application/cloudevents+json"
_FRAME_HEADER, _FRAME_BODY = 2, 3
#: content type, delivery mode and message id (pika's BasicProperties.FLAG_*)
_PLAIN_FLAGS = (1 << 15) | (1 << 12) | (1 << 7)
_PERSISTENT = b"\x02"
#: how many bytes of marshalled frames are handed to pika's transport at once
_WRITE_CHUNK = 128 * 1024
#: a frame's own bytes around its payload (type, channel, size; frame end)
_FRAME_OVERHEAD = _FRAME.size + len(_FRAME_END)
#: the reply code of a broker closing connections as it shuts down
_CONNECTION_FORCED = 320


class PikaPublisher:
    """Streaming publisher confirms on one pika ``SelectConnection`` driven synchronously.

    ``send`` writes a batch and returns a ``Ticket`` at once; ``collect`` runs the I/O loop
    until every delivery tag of that ticket is acked, nacked or returned, or until
    ``confirm_timeout`` passes (then ``PublishError``: the relay keeps every row of the batch).
    Several tickets may be outstanding, so the relay can claim and write the next batch while
    the broker confirms this one. ``publish_batch`` is ``send`` + ``collect``. Between batches
    ``idle`` keeps the loop, and so the heartbeats, turning.

    A batch is marshalled here into one byte string per ~128 KiB and handed to pika's
    transport in one piece: ``basic_publish`` builds three frame objects per message and the
    transport sends each frame with its own ``send`` call, which cost the relay more CPU than
    the broker's confirms cost it time. The bytes are the same frames pika would write
    (``test_publishers`` compares them).
    """

    #: large batches: the confirms of a whole batch cost about one round trip, so the fixed
    #: cost of a batch (claiming rows, marking them sent) is spread over more messages
    preferred_batch = 2000

    def __init__(self, url: str, exchange: str, confirm_timeout: float = 10.0,
                 connect_timeout: float = 5.0) -> None:
        self.url = url
        self.exchange = exchange
        self.confirm_timeout = confirm_timeout
        self.connect_timeout = connect_timeout
        self._conn: Any = None
        self._channel: Any = None
        self._error: str | None = None
        #: the channel or connection closed under us (not a timeout, block or shutdown)
        self._broken = False
        self._generation = 0
        self._next_tag = 1
        self._low = 1  # every tag below this one is settled
        self._tags: dict[int, tuple[Ticket, int]] = {}  # unsettled tag -> (ticket, row id)
        self._open: list[Ticket] = []  # written on this connection, not yet collected
        self._publish_frames: dict[tuple[str, str], bytes] = {}

    # -- connection -------------------------------------------------------------------------
    def _connect(self) -> None:
        import pika

        params = pika.URLParameters(self.url)
        params.socket_timeout = self.connect_timeout
        params.blocked_connection_timeout = self.confirm_timeout
        if params.heartbeat is None:
            params.heartbeat = 10
        self._error = None
        self._broken = False
        ready = {"ok": False}

        def on_channel(channel):  # type: ignore[no-untyped-def]
            self._channel = channel
            channel.add_on_return_callback(self._on_return)
            channel.add_on_close_callback(self._on_channel_closed)
            channel.confirm_delivery(self._on_confirm, callback=lambda _f: _ready())

        def _ready() -> None:
            ready["ok"] = True
            self._conn.ioloop.stop()

        def on_open(conn):  # type: ignore[no-untyped-def]
            conn.channel(on_open_callback=on_channel)

        def on_open_error(_conn, exc):  # type: ignore[no-untyped-def]
            self._error = f"connect failed: {exc!r}"
            _conn.ioloop.stop()

        self._generation += 1
        self._tags.clear()
        self._open.clear()
        self._next_tag = self._low = 1
        self._conn = pika.SelectConnection(params, on_open_callback=on_open,
                                           on_open_error_callback=on_open_error,
                                           on_close_callback=self._on_conn_closed)
        self._run_loop(self.connect_timeout, lambda: ready["ok"] or self._error is not None)
        if not ready["ok"]:
            err = self._error or "connect timed out"
            self.close()
            raise PublishError(err, unreachable=True)

    @staticmethod
    def _broke(reason: BaseException) -> bool:
        """Whether a channel or connection closed for a reason that may lie in what was
        written: the broker closing it (406 for a message over its ``max_message_size``, 501
        for a frame it cannot take) or the stream breaking. A blocked connection (memory or
        disk alarm), a missed heartbeat, a broker shutting down or our own close may not."""
        from pika import exceptions

        if isinstance(reason, (exceptions.ConnectionBlockedTimeout,
                               exceptions.AMQPHeartbeatTimeout,
                               exceptions.ConnectionClosedByClient,
                               exceptions.ChannelClosedByClient)):
            return False
        return getattr(reason, "reply_code", None) != _CONNECTION_FORCED

    def _on_conn_closed(self, _conn, reason):  # type: ignore[no-untyped-def]
        if self._error is None:  # the first reason: a channel's close closes the connection
            self._error = f"connection closed: {reason!r}"
            self._broken = self._broke(reason)
        self._channel = None
        with contextlib.suppress(Exception):
            _conn.ioloop.stop()

    def _on_channel_closed(self, _channel, reason):  # type: ignore[no-untyped-def]
        if self._error is None:
            self._error = f"channel closed: {reason!r}"
            self._broken = self._broke(reason)
        self._channel = None
        if self._conn is not None and self._conn.is_open:
            self._conn.close()

    def _run_loop(self, timeout: float, done) -> None:  # type: ignore[no-untyped-def]
        """Turn the I/O loop until ``done()`` or the timeout."""
        loop = self._conn.ioloop
        deadline = time.monotonic() + timeout
        timer = {"handle": None}

        def check() -> None:
            if done() or time.monotonic() >= deadline:
                loop.stop()
            else:
                timer["handle"] = loop.call_later(0.002, check)

        timer["handle"] = loop.call_later(0, check)
        loop.start()
        if timer["handle"] is not None:
            loop.remove_timeout(timer["handle"])

    # -- callbacks ----------------------------------------------------------------------------
    def _on_return(self, _channel, method, properties, _body):  # type: ignore[no-untyped-def]
        """A mandatory message reached no queue; RabbitMQ sends the return before its ack.

        Two rows may carry one event id (a retry row and the original); they are told apart
        by where they went, and among rows with the same target the oldest unsettled one is
        the one returned (returns come in publishing order)."""
        key = (properties.message_id or "", method.exchange, method.routing_key)
        for candidate in self._open:
            tags = candidate.by_message.get(key)
            while tags:
                entry = self._tags.get(tags.pop(0))
                if entry is not None:
                    ticket, row = entry
                    ticket.failed[row] = UNROUTABLE
                    return

    def _on_confirm(self, frame):  # type: ignore[no-untyped-def]
        method = frame.method
        acked = method.NAME == "Basic.Ack"
        tag = method.delivery_tag
        if method.multiple:
            settle = range(self._low, tag + 1)
            self._low = max(self._low, tag + 1)
        else:
            settle = range(tag, tag + 1)
            if tag == self._low:
                self._low += 1
        pop = self._tags.pop
        for t in settle:
            entry = pop(t, None)
            if entry is None:
                continue
            ticket, row = entry
            ticket.pending -= 1
            if not acked:
                ticket.failed[row] = "nacked by the broker"
            elif row not in ticket.failed:  # returned as unroutable before its ack
                ticket.confirmed.append(row)
        low, tags, last = self._low, self._tags, self._next_tag
        while low < last and low not in tags:  # single acks may settle the oldest tags
            low += 1
        self._low = low

    # -- marshalling --------------------------------------------------------------------------
    def _frames(self, m: Outgoing, exchange: str, channel: int, body_max: int) -> bytes:
        """The method, header and body frames of one persistent, mandatory publish."""
        publish = self._publish_frames.get((exchange, m.routing_key))
        if publish is None:
            from pika import frame, spec

            publish = frame.Method(channel, spec.Basic.Publish(
                exchange=exchange, routing_key=m.routing_key, mandatory=True)).marshal()
            self._publish_frames[(exchange, m.routing_key)] = publish
        body = m.body.encode("utf-8")
        size = len(body)
        message_id = m.event_id.encode("utf-8")
        if len(message_id) > SHORT_STRING_MAX:
            raise Unpublishable(f"unpublishable: message id of {len(message_id)} bytes "
                                f"(AMQP allows {SHORT_STRING_MAX})")
        if m.headers:  # rare (retries, dead letters): let pika encode the table
            from pika import BasicProperties, frame

            header = frame.Header(channel, size, BasicProperties(
                content_type=_CONTENT_TYPE.decode(), delivery_mode=2, message_id=m.event_id,
                headers=m.headers)).marshal()
            self._check_header(header, m, body_max)
        else:
            payload = b"".join((_HEADER.pack(60, 0, size, _PLAIN_FLAGS),
                                bytes((len(_CONTENT_TYPE),)), _CONTENT_TYPE, _PERSISTENT,
                                bytes((len(message_id),)), message_id))
            header = b"".join((_FRAME.pack(_FRAME_HEADER, channel, len(payload)), payload,
                               _FRAME_END))
        if not size:  # the header says 0 bytes: a body frame would be an unexpected frame
            return publish + header
        if size <= body_max:
            return b"".join((publish, header, _FRAME.pack(_FRAME_BODY, channel, size), body,
                             _FRAME_END))
        parts = [publish, header]
        for start in range(0, size, body_max):
            chunk = body[start:start + body_max]
            parts += (_FRAME.pack(_FRAME_BODY, channel, len(chunk)), chunk, _FRAME_END)
        return b"".join(parts)

    def _check_header(self, header: bytes, m: Outgoing, body_max: int) -> None:
        """Properties are one frame and cannot be split: larger than ``frame_max``, RabbitMQ
        closes the connection (501 FRAME_ERROR) and the whole batch fails."""
        if len(header) > body_max + _FRAME_OVERHEAD:
            raise Unpublishable(f"unpublishable: properties of {len(header)} bytes exceed "
                                f"frame_max ({body_max + _FRAME_OVERHEAD})")

    # -- the interface ------------------------------------------------------------------------
    def send(self, messages: Sequence[Outgoing]) -> Ticket:
        """Write ``messages`` (connecting first if need be) without waiting for confirms.

        A message that cannot be published as it is (``unpublishable``, properties over
        ``frame_max``: anything pika cannot marshal) is not written; its row is refused in the
        ticket. Raises ``PublishError`` when the broker cannot be reached (nothing was
        written then) or writing fails (then the connection is dropped)."""
        if self._channel is None or self._conn is None or not self._conn.is_open:
            self.close()
            self._connect()
        conn, channel = self._conn, self._channel.channel_number
        body_max = conn._body_max_length  # frame_max less the frame's own 8 bytes
        ticket = Ticket([m.row_id for m in messages], self._next_tag, self._generation)
        tags, by_message, topic = self._tags, ticket.by_message, self.exchange
        out: list[bytes] = []
        buffered = 0
        tag = self._next_tag
        try:
            for m in messages:
                exchange = topic if m.kind == TOPIC else ""
                try:
                    data = self._frames(m, exchange, channel, body_max)
                except Exception as exc:  # its own failure: the rest of the batch goes on
                    ticket.refused[m.row_id] = (
                        str(exc) if isinstance(exc, Unpublishable)
                        else f"unpublishable: {exc.__class__.__name__}: {exc}")
                    continue
                out.append(data)
                buffered += len(data)
                tags[tag] = (ticket, m.row_id)
                by_message.setdefault((m.event_id, exchange, m.routing_key), []).append(tag)
                tag += 1
                if buffered >= _WRITE_CHUNK:
                    conn._output_marshaled_frames((b"".join(out),))
                    out, buffered = [], 0
            if out:
                conn._output_marshaled_frames((b"".join(out),))
        except Exception as exc:  # what was written is unknown: drop the connection
            self.close()
            raise PublishError(f"writing failed: {exc!r}") from exc
        self._next_tag = tag
        ticket.pending = tag - ticket.first
        self._open.append(ticket)
        return ticket

    def collect(self, ticket: Ticket) -> BatchResult:
        """Wait for every confirm of ``ticket``. Rows left unconfirmed when the connection
        fails or the time is up count as failed (their own backoff), unless the broker settled
        none of the batch: then ``PublishError`` (``suspect`` if the channel or connection
        closed under it), and the relay keeps the whole batch unsent."""
        if ticket.generation == self._generation and self._conn is not None:
            self._run_loop(self.confirm_timeout,
                           lambda: not ticket.pending or self._error is not None)
        if ticket.pending:
            reason = self._error or "confirms timed out"
            current = ticket.generation == self._generation
            suspect = current and self._error is not None and self._broken
            if current:
                self.close()
            if not ticket.confirmed and not ticket.failed:
                raise PublishError(reason, suspect=suspect)
            settled = set(ticket.confirmed)
            for row in ticket.rows:
                if row not in settled:
                    ticket.failed.setdefault(row, reason)
        if ticket in self._open:
            self._open.remove(ticket)
        ticket.by_message.clear()
        if ticket.refused:
            ticket.failed.update(ticket.refused)
        return BatchResult(ticket.confirmed, ticket.failed)

    def publish_batch(self, messages: Sequence[Outgoing]) -> BatchResult:
        return self.collect(self.send(messages))

    def idle(self, seconds: float) -> None:
        if self._conn is not None and self._conn.is_open:
            self._run_loop(seconds, lambda: self._error is not None)
            if self._error:
                self.close()
        else:
            time.sleep(seconds)

    def close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        self._tags.clear()
        self._open.clear()
        if conn is None:
            return
        try:
            if conn.is_open:
                conn.close()
                deadline = time.monotonic() + 1.0
                while not conn.is_closed and time.monotonic() < deadline:
                    conn.ioloop.call_later(0.05, conn.ioloop.stop)
                    conn.ioloop.start()
        except Exception:  # noqa: S110 - closing a broken connection may itself fail
            pass


def make_publisher(url: str, exchange: str) -> Publisher:
    """Pika with a confirm window on AMQP; kombu on the in-memory transport."""
    if url.startswith(("amqp", "pyamqp")):
        return PikaPublisher(url.replace("pyamqp://", "amqp://"), exchange)
    return KombuPublisher(url, exchange)


def headers_json(raw: str | None) -> dict[str, Any]:
    if not raw or raw == "{}":  # most rows: an event with no transport headers
        return {}
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
