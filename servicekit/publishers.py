"""Publishing outbox rows with publisher confirms: one small interface, two implementations.

* ``PikaPublisher`` keeps many confirms outstanding (a window), so a batch of hundreds costs
  about one round trip; it is what the relay uses on RabbitMQ. Waiting for each confirm, as
  kombu's ``confirm_publish`` does, caps a publisher at roughly 1,000 msg/s.
* ``KombuPublisher`` publishes one message at a time through kombu; it serves the embedded
  tier's in-memory transport (and works on AMQP too, with ``confirm_publish``).

Both publish with ``mandatory=True``: a message that reached no queue comes back as a return
and counts as a failure (RELIABILITY R2), never as success.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

TOPIC = "topic"  # to the suite's topic exchange, routing key = event type
QUEUE = "queue"  # straight to one queue through the default exchange


class PublishError(Exception):
    """The broker could not be reached or did not confirm in time; every row stays unsent."""


@dataclass(frozen=True)
class Outgoing:
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


class Publisher(Protocol):
    #: rows per relay batch that suit this publisher (see each implementation)
    preferred_batch: int

    def publish_batch(self, messages: Sequence[Outgoing]) -> BatchResult: ...
    def idle(self, seconds: float) -> None: ...
    def close(self) -> None: ...


def _exchange_for(message: Outgoing, topic_exchange: str) -> str:
    return topic_exchange if message.kind == TOPIC else ""


class KombuPublisher:
    """One message at a time; confirms (on AMQP) waited for per message by kombu."""

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
            for m in messages:
                producer.publish(
                    m.body, exchange=_exchange_for(m, self.exchange), routing_key=m.routing_key,
                    content_type="application/cloudevents+json", content_encoding="utf-8",
                    headers=m.headers, message_id=m.event_id, delivery_mode=2,
                    mandatory=not self.connection.transport_cls.startswith("memory"),
                    retry=False, timeout=self.confirm_timeout,
                    confirm_timeout=self.confirm_timeout,
                )
                reason = self._returned.pop(m.event_id, None)
                if reason:
                    result.failed[m.row_id] = reason
                else:
                    result.confirmed.append(m.row_id)
        except Exception as exc:  # connection-level: nothing after this point is known sent
            self.close()
            if result.confirmed:
                return result
            raise PublishError(str(exc)) from exc
        return result

    def idle(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        self._producer = None
        with contextlib.suppress(Exception):  # closing a broken connection may itself fail
            self.connection.release()


class PikaPublisher:
    """Streaming publisher confirms on one pika ``SelectConnection`` driven synchronously.

    ``publish_batch`` writes the whole batch, then runs the I/O loop until every delivery tag
    is acked, nacked or returned, or until ``confirm_timeout`` passes (then ``PublishError``:
    the relay keeps every row of the batch). Between batches ``idle`` keeps the loop, and so the
    heartbeats, turning.
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
        self._reset_batch()

    # -- connection -------------------------------------------------------------------------
    def _reset_batch(self) -> None:
        self._pending: dict[int, int] = {}  # delivery tag -> row id
        self._by_event: dict[str, int] = {}
        self._confirmed: list[int] = []
        self._failed: dict[int, str] = {}
        self._returned: set[int] = set()
        self._next_tag = 1 if self._channel is None else self._next_tag

    def _connect(self) -> None:
        import pika

        params = pika.URLParameters(self.url)
        params.socket_timeout = self.connect_timeout
        params.blocked_connection_timeout = self.confirm_timeout
        if params.heartbeat is None:
            params.heartbeat = 10
        self._error = None
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

        self._conn = pika.SelectConnection(params, on_open_callback=on_open,
                                           on_open_error_callback=on_open_error,
                                           on_close_callback=self._on_conn_closed)
        self._run_loop(self.connect_timeout, lambda: ready["ok"] or self._error is not None)
        if not ready["ok"]:
            err = self._error or "connect timed out"
            self.close()
            raise PublishError(err)
        self._next_tag = 1

    def _on_conn_closed(self, _conn, reason):  # type: ignore[no-untyped-def]
        self._error = f"connection closed: {reason!r}"
        self._channel = None
        with contextlib.suppress(Exception):
            _conn.ioloop.stop()

    def _on_channel_closed(self, _channel, reason):  # type: ignore[no-untyped-def]
        self._error = f"channel closed: {reason!r}"
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
    def _on_return(self, _channel, _method, properties, _body):  # type: ignore[no-untyped-def]
        row = self._by_event.get(properties.message_id or "")
        if row is not None:
            self._returned.add(row)
            self._failed[row] = "unroutable: no queue bound for this routing key"

    def _on_confirm(self, frame):  # type: ignore[no-untyped-def]
        method = frame.method
        acked = method.NAME == "Basic.Ack"
        tags = ([t for t in self._pending if t <= method.delivery_tag] if method.multiple
                else [method.delivery_tag])
        for tag in tags:
            row = self._pending.pop(tag, None)
            if row is None:
                continue
            if acked and row not in self._returned:
                self._confirmed.append(row)
            elif not acked:
                self._failed[row] = "nacked by the broker"

    # -- the interface ------------------------------------------------------------------------
    def publish_batch(self, messages: Sequence[Outgoing]) -> BatchResult:
        import pika

        if self._channel is None or self._conn is None or not self._conn.is_open:
            self.close()
            self._connect()
        self._reset_batch()
        for m in messages:
            # the type is the routing key and the envelope's "type"; JSON is UTF-8 by definition
            props = pika.BasicProperties(content_type="application/cloudevents+json",
                                         delivery_mode=2, message_id=m.event_id,
                                         headers=m.headers or None)
            self._pending[self._next_tag] = m.row_id
            self._by_event[m.event_id] = m.row_id
            self._next_tag += 1
            self._channel.basic_publish(_exchange_for(m, self.exchange), m.routing_key,
                                        m.body.encode("utf-8"), props, mandatory=True)
        self._run_loop(self.confirm_timeout, lambda: not self._pending or self._error is not None)
        if self._pending:
            reason = self._error or "confirms timed out"
            self.close()
            if not self._confirmed and not self._failed:
                raise PublishError(reason)
            for row in self._pending.values():
                self._failed[row] = reason
        return BatchResult(list(self._confirmed), dict(self._failed))

    def idle(self, seconds: float) -> None:
        if self._conn is not None and self._conn.is_open:
            self._run_loop(seconds, lambda: self._error is not None)
            if self._error:
                self.close()
        else:
            time.sleep(seconds)

    def close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
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
