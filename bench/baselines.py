"""Raw baselines: what the bare libraries do on this machine, measured in the same run.

Every suite figure is reported as a ratio against one of these, never as an absolute target.
Each function takes the URL/DSN of an isolated vhost or database (see ``bench.common``) and
returns a number (or a small result object); it cleans up the queues and tables it made.

* ``pika_confirm_sync``      BlockingConnection + ``confirm_delivery``: publish, wait for the
                             confirm, publish the next. Durable topic exchange → quorum queue.
* ``pika_confirm_stream``    SelectConnection with up to ``window`` confirms outstanding,
                             confirms handled in ``ack_nack_callback`` (``multiple`` honoured).
* ``pika_consume_acks``      BlockingConnection consumer, one ``basic_ack`` per message.
* ``pg_tx_rates``            psycopg 3, one connection, N transactions of 1 INSERT and N of
                             2 INSERTs, alternating in blocks (``pg_tx_rate``: one kind).
* ``flask_gunicorn_wrk``     a trivial Flask JSON route under gunicorn (2 sync workers), wrk.
* ``process_rss_mb``         RSS of one process from /proc/<pid>/status (no psutil).
"""

from __future__ import annotations

import collections
import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pika
from pika.spec import Basic

from bench.common import (
    HOST,
    BenchError,
    clean_env,
    free_port,
    random_name,
    rss_kb,
    running,
    venv_tool,
    wait_http,
)
from bench.wrk import WrkResult, run_wrk

EXCHANGE = "bench.events"
ROUTING_KEY = "bench.case.docketed"
BINDING = "bench.#"


def sample_body(seq: int = 0) -> bytes:
    """A CloudEvent-shaped JSON body of the size the suite publishes (~450 bytes)."""
    return json.dumps({
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": "bench",
        "type": ROUTING_KEY, "time": "2025-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "correlationid": uuid.uuid4().hex,
        "data": {"seq": seq, "case_id": str(uuid.uuid4()), "case_number": "(2025)粤0106民初1号",
                 "court": "广州互联网法院", "parties": ["a" * 32, "b" * 32]},
    }, ensure_ascii=False, separators=(",", ":")).encode()


def _props() -> pika.BasicProperties:
    return pika.BasicProperties(delivery_mode=2, content_type="application/cloudevents+json",
                                message_id=uuid.uuid4().hex)


def _declare_blocking(ch, queue: str) -> None:  # type: ignore[no-untyped-def]
    ch.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    ch.queue_bind(queue, EXCHANGE, routing_key=BINDING)


# --------------------------------------------------------------------------------------------
# RabbitMQ
# --------------------------------------------------------------------------------------------

def pika_confirm_sync(url: str, n: int = 3000, timeout: float = 120.0) -> float:
    """msg/s publishing one message at a time and waiting for each publisher confirm."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        queue = random_name("q")
        _declare_blocking(ch, queue)
        body = sample_body()
        deadline = time.monotonic() + timeout
        t0 = time.perf_counter()
        for _ in range(n):
            ch.basic_publish(EXCHANGE, ROUTING_KEY, body, _props())  # raises on nack
            if time.monotonic() > deadline:
                raise BenchError(f"pika_confirm_sync exceeded {timeout}s")
        elapsed = time.perf_counter() - t0
        ch.queue_delete(queue)
        return n / elapsed
    finally:
        if conn.is_open:
            conn.close()


class _StreamingPublisher:
    """Publish ``n`` messages with at most ``window`` unconfirmed, on pika's SelectConnection."""

    def __init__(self, url: str, n: int, window: int, queue: str, timeout: float) -> None:
        self.params = pika.URLParameters(url)
        self.n, self.window, self.queue, self.timeout = n, window, queue, timeout
        self.published = 0
        self.acked = 0
        self.nacked = 0
        self.outstanding: collections.OrderedDict[int, None] = collections.OrderedDict()
        self.t0 = self.t1 = 0.0
        self.error: str | None = None
        self.conn: pika.SelectConnection | None = None
        self.ch = None
        self.body = sample_body()

    def run(self) -> float:
        self.conn = pika.SelectConnection(self.params, on_open_callback=self._on_open,
                                          on_open_error_callback=self._on_open_error,
                                          on_close_callback=self._on_closed)
        self.conn.ioloop.call_later(self.timeout, self._on_timeout)
        self.conn.ioloop.start()
        if self.error:
            raise BenchError(self.error)
        if self.nacked:
            raise BenchError(f"broker nacked {self.nacked} messages")
        return self.n / (self.t1 - self.t0)

    # connection plumbing ---------------------------------------------------------------
    def _on_open(self, conn) -> None:  # type: ignore[no-untyped-def]
        conn.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, _conn, exc) -> None:  # type: ignore[no-untyped-def]
        self.error = f"connection failed: {exc}"
        self.conn.ioloop.stop()

    def _on_closed(self, _conn, reason) -> None:  # type: ignore[no-untyped-def]
        if self.acked + self.nacked < self.n and not self.error:
            self.error = f"connection closed early: {reason}"
        self.conn.ioloop.stop()

    def _on_timeout(self) -> None:
        if self.acked + self.nacked < self.n:
            self.error = f"timed out after {self.timeout}s ({self.acked}/{self.n} confirmed)"
            self._close()

    def _close(self) -> None:
        if self.conn and not (self.conn.is_closing or self.conn.is_closed):
            self.conn.close()

    def _on_channel(self, ch) -> None:  # type: ignore[no-untyped-def]
        self.ch = ch
        ch.exchange_declare(EXCHANGE, exchange_type="topic", durable=True,
                            callback=lambda _f: ch.queue_declare(
                                self.queue, durable=True,
                                arguments={"x-queue-type": "quorum"},
                                callback=lambda _f: ch.queue_bind(
                                    self.queue, EXCHANGE, routing_key=BINDING,
                                    callback=lambda _f: ch.confirm_delivery(
                                        ack_nack_callback=self._on_confirm,
                                        callback=self._on_confirm_mode))))

    def _on_confirm_mode(self, _frame) -> None:  # type: ignore[no-untyped-def]
        self.t0 = time.perf_counter()
        self._pump()

    # publishing ----------------------------------------------------------------------------
    def _pump(self) -> None:
        while self.published < self.n and len(self.outstanding) < self.window:
            self.ch.basic_publish(EXCHANGE, ROUTING_KEY, self.body, _props())
            self.published += 1
            self.outstanding[self.published] = None  # delivery tags count from 1

    def _on_confirm(self, frame) -> None:  # type: ignore[no-untyped-def]
        method = frame.method
        tag = method.delivery_tag
        if method.multiple:
            done = 0
            while self.outstanding and next(iter(self.outstanding)) <= tag:
                self.outstanding.popitem(last=False)
                done += 1
        else:
            done = 1 if self.outstanding.pop(tag, False) is None else 0
        if isinstance(method, Basic.Nack):
            self.nacked += done
        else:
            self.acked += done
        if self.acked + self.nacked >= self.n:
            self.t1 = time.perf_counter()
            self._close()
        else:
            self._pump()


def pika_confirm_stream(url: str, n: int = 20_000, window: int = 1000, queue: str | None = None,
                        keep_queue: bool = False, timeout: float = 180.0) -> float:
    """msg/s publishing with up to ``window`` confirms outstanding (the relay's ceiling).

    With ``keep_queue`` the messages stay in ``queue`` for ``pika_consume_acks``.
    """
    queue = queue or random_name("q")
    rate = _StreamingPublisher(url, n, window, queue, timeout).run()
    if not keep_queue:
        delete_queue(url, queue)
    return rate


def delete_queue(url: str, queue: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        conn.channel().queue_delete(queue)
    finally:
        conn.close()


def pika_consume_acks(url: str, queue: str, n: int, prefetch: int = 100,
                      timeout: float = 180.0, delete: bool = True) -> float:
    """msg/s consuming ``n`` waiting messages with one manual ``basic_ack`` each."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=prefetch)
        count = 0
        deadline = time.monotonic() + timeout
        t0 = time.perf_counter()
        for method, _properties, body in ch.consume(queue, inactivity_timeout=10):
            if method is None:
                raise BenchError(f"consumer idle for 10s after {count}/{n} messages")
            json.loads(body)  # a consumer reads the body; so does the baseline
            ch.basic_ack(method.delivery_tag)
            count += 1
            if count >= n:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"pika_consume_acks exceeded {timeout}s")
        elapsed = time.perf_counter() - t0
        ch.cancel()
        if delete:
            ch.queue_delete(queue)
        return count / elapsed
    finally:
        if conn.is_open:
            conn.close()


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------

_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_state (
    id bigserial PRIMARY KEY, case_id text NOT NULL, status text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS raw_outbox (
    id bigserial PRIMARY KEY, event_id text NOT NULL, type text NOT NULL,
    body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz);
"""


def _pg_block(conn, start: int, n: int, rows: int, body: str) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    for i in range(start, start + n):
        with conn.transaction():
            conn.execute("INSERT INTO raw_state (case_id, status) VALUES (%s, %s)",
                         (f"case-{i}", "docketed"))
            if rows == 2:
                conn.execute("INSERT INTO raw_outbox (event_id, type, body) "
                             "VALUES (%s, %s, %s)", (uuid.uuid4().hex, ROUTING_KEY, body))
    return time.perf_counter() - t0


def pg_tx_rates(dsn: str, n: int = 3000, block: int = 100,
                timeout: float = 120.0) -> tuple[float, float]:
    """(1-row tx/s, 2-row tx/s) on one psycopg 3 connection, ``n`` transactions each.

    1 row: a state row; 2 rows: the state row and an outbox-shaped row carrying an event body.
    The two kinds alternate in blocks of ``block`` so drift hits both alike."""
    import psycopg

    body = sample_body().decode()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_PG_SCHEMA)
        conn.execute("TRUNCATE raw_state, raw_outbox")
        _pg_block(conn, 0, min(200, n), 2, body)  # warm-up: prepared statements, caches
        spent = {1: 0.0, 2: 0.0}
        done = {1: 0, 2: 0}
        deadline = time.monotonic() + timeout
        while min(done.values()) < n:
            for rows in (1, 2):
                size = min(block, n - done[rows])
                spent[rows] += _pg_block(conn, done[rows], size, rows, body)
                done[rows] += size
            if time.monotonic() > deadline:
                raise BenchError(f"pg_tx_rates exceeded {timeout}s")
        conn.execute("DROP TABLE raw_state, raw_outbox")
    return n / spent[1], n / spent[2]


def pg_tx_rate(dsn: str, rows: int = 1, n: int = 3000, timeout: float = 120.0) -> float:
    """Transactions/s on one psycopg 3 connection, each inserting ``rows`` (1 or 2) rows."""
    import psycopg

    if rows not in (1, 2):
        raise ValueError("rows must be 1 or 2")
    body = sample_body().decode()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_PG_SCHEMA)
        conn.execute("TRUNCATE raw_state, raw_outbox")
        deadline = time.monotonic() + timeout
        elapsed = 0.0
        done = 0
        while done < n:
            size = min(100, n - done)
            elapsed += _pg_block(conn, done, size, rows, body)
            done += size
            if time.monotonic() > deadline:
                raise BenchError(f"pg_tx_rate exceeded {timeout}s")
        conn.execute("DROP TABLE raw_state, raw_outbox")
    return n / elapsed


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def hello_server(log_dir: Path, workers: int = 2) -> Iterator[str]:
    """``bench.apps.hello`` (one trivial JSON route) under gunicorn sync workers; yields its
    URL. gunicorn's control socket goes to a temp folder (XDG_RUNTIME_DIR), not ~/.gunicorn."""
    port = free_port()
    args = [venv_tool("gunicorn"), "-w", str(workers), "-k", "sync", "-b", f"{HOST}:{port}",
            "bench.apps.hello:app"]
    with tempfile.TemporaryDirectory(prefix="bench-hello-") as xdg, \
            running(args, log_dir / "hello-gunicorn.log",
                    clean_env(XDG_RUNTIME_DIR=xdg)) as proc:
        url = f"http://{HOST}:{port}/ping"
        wait_http(url, timeout=30, proc=proc.popen)
        yield url


def flask_gunicorn_wrk(log_dir: Path, duration: float = 5.0, connections: int = 32,
                       workers: int = 2) -> WrkResult:
    """wrk against a trivial Flask JSON route under gunicorn (2 sync workers)."""
    with hello_server(log_dir, workers) as url:
        return run_wrk(url, connections=connections, duration=duration)


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------

def process_rss_mb(pid: int) -> float:
    """RSS of one process in MiB, read from /proc/<pid>/status (VmRSS)."""
    return rss_kb(pid) / 1024


@dataclass
class PublishConsume:
    publish_rate: float
    consume_rate: float


def stream_then_consume(url: str, n: int = 20_000, window: int = 1000,
                        prefetch: int = 100) -> PublishConsume:
    """One streaming-confirm publish of ``n`` messages, then consume them all with acks."""
    queue = random_name("q")
    try:
        pub = pika_confirm_stream(url, n=n, window=window, queue=queue, keep_queue=True)
        con = pika_consume_acks(url, queue, n, prefetch=prefetch, delete=False)
    finally:
        delete_queue(url, queue)
    return PublishConsume(pub, con)
