"""Test helpers for every tier: isolated broker vhosts and databases, a TCP proxy that can cut
a connection, and bounded waiting (never bare sleeps).

Each test run makes its own RabbitMQ vhost and its own PostgreSQL databases and removes them
afterwards, so nothing else on the machine is disturbed.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

if TYPE_CHECKING:
    from servicekit.consumer import Handler
    from servicekit.db import Database
    from servicekit.envelope import CloudEvent

T = TypeVar("T")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
AMQP_HOST = "127.0.0.1:5672"


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.05,
             message: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def problem_of(resp: Any, status: int, slug: str) -> dict[str, Any]:
    """The problem+json body of a test client's ``resp``, after checking it is the problem
    ``slug`` (its ``type``'s last segment) with ``status``."""
    assert resp.status_code == status, resp.get_json()
    assert resp.content_type == "application/problem+json", resp.content_type
    body: dict[str, Any] = resp.get_json()
    assert body["type"].endswith(f"/{slug}"), body
    return body


def answers_ok(url: str, timeout: float = 2.0) -> bool:
    """``url`` answers 200 now (for ``wait_for`` while a server starts)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - test URLs
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def free_port() -> int:
    """A loopback port nothing listens on now (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# -- SQLite's write lock ------------------------------------------------------------------
@contextlib.contextmanager
def _holding_the_write_lock(database_url: str, wait: float) -> Iterator[None]:
    """Another connection holds the write lock of the SQLite database at ``database_url``
    (``BEGIN IMMEDIATE``, as every writing transaction of the embedded tier begins) while the
    block runs, and lets it go after. It waits up to ``wait`` seconds for the lock:
    ``sqlite3.OperationalError`` ("database is locked") when someone else holds it longer."""
    import sqlite3

    from sqlalchemy.engine import make_url

    conn = sqlite3.connect(make_url(database_url).database or "", isolation_level=None,
                           timeout=wait)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()


def answered_while_writing(database_url: str, call: Callable[[], T],
                           within: float = 5.0) -> T:
    """What ``call()`` returns when it runs while another connection holds the write lock of
    the SQLite database at ``database_url`` (``_holding_the_write_lock``, held open for as
    long as a write can take).

    A read that takes no write lock answers at once. A read that begins ``BEGIN IMMEDIATE``
    too would wait for it, up to the busy timeout (30 s): after ``within`` seconds the test
    fails instead of waiting that long. The lock is let go, and the call waited for, before
    this returns or fails, so nothing outlives the test."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(call())
        except BaseException as exc:  # noqa: BLE001 - raised in the test's thread below
            errors.append(exc)

    reader = threading.Thread(target=run, daemon=True)
    try:
        with _holding_the_write_lock(database_url, within):
            reader.start()
            reader.join(within)
            waited = reader.is_alive()
    finally:
        if reader.ident is not None:  # started: wait for it, now that the lock is let go
            reader.join()
    if errors:
        raise errors[0]
    assert not waited, f"no answer within {within}s while another connection held the " \
                       "write lock: the read waited for it"
    return results[0]


def read_alike_while_writing(database_url: str, get: Callable[[], Any]) -> None:
    """``get()``, a test client's read of a route, answers 200 while another connection holds
    the write lock (``answered_while_writing``), with exactly the body and ETag it answered
    before: a route that reads without the lock answers as it did with it."""
    before = get()
    assert before.status_code == 200, before.get_data(as_text=True)
    during = answered_while_writing(database_url, get)
    assert (during.status_code, during.data, during.headers.get("ETag")) == (
        200, before.data, before.headers.get("ETag"))


# -- RabbitMQ -----------------------------------------------------------------------------
@contextlib.contextmanager
def root_logging_kept() -> Iterator[None]:
    """Run a CLI in-process and give the root logger back as it was: ``ecourt`` configures
    JSON logging on it, which would otherwise stay for every later test of the process."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def rabbit_vhost(prefix: str = "ecourt_test") -> Iterator[str]:
    """A fresh vhost for guest; yields its AMQP URL and deletes it afterwards."""
    name = unique(prefix)
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{AMQP_HOST}/{name}"
    finally:
        _rabbitmqctl("delete_vhost", name)


# -- PostgreSQL ---------------------------------------------------------------------------
@contextlib.contextmanager
def pg_databases(names: list[str], prefix: str = "ecourt_test") -> Iterator[dict[str, str]]:
    """Fresh databases, one per name; yields SQLAlchemy URLs and drops them afterwards."""
    tag = unique(prefix)
    dbs = {name: f"{tag}_{name}" for name in names}
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        for db in dbs.values():
            conn.execute(f'CREATE DATABASE "{db}"')
    try:
        yield {name: f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
               for name, db in dbs.items()}
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for db in dbs.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# -- consumers: what they hold while they wait, and one on kombu's in-memory transport -----
def transaction_open(database: Database) -> bool:
    """Whether ``database`` has a writing transaction open now, as another connection sees
    it: the question for code that must not hold one while it waits on something else (a
    consumer's look-ups in another service).

    On SQLite, whether the write lock is taken: another connection cannot take it at once
    (``_holding_the_write_lock`` with no busy wait). On PostgreSQL, whether a connection of the
    database's pool is checked out, or any other client of the database is inside a
    transaction (``pg_stat_activity``).

    Probes made at once from several threads (look-ups a consumer makes concurrently) would
    see each other — on SQLite a probe holds the write lock for an instant, on PostgreSQL its
    own query is a transaction — so one probe runs at a time, and a probe's connection is
    named (``application_name``) and left out of what the others count."""
    import sqlite3

    from sqlalchemy.engine import make_url

    url = make_url(database.url)
    with _ONE_PROBE_AT_A_TIME:
        if url.get_backend_name() == "sqlite":
            try:
                with _holding_the_write_lock(database.url, 0):
                    return False
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                return True
        if database.engine.pool.checkedout():
            return True
        with psycopg.connect(url.set(drivername="postgresql").render_as_string(False),
                             autocommit=True, application_name=_PROBE) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                " AND application_name <> %s AND xact_start IS NOT NULL",
                (_PROBE,)).fetchone()
        return bool(row and row[0])


#: ``transaction_open``'s probes, one at a time, and the name their PostgreSQL connections go by
_ONE_PROBE_AT_A_TIME = threading.Lock()
_PROBE = "ecourt-transaction-probe"


class InMemoryConsumer:
    """An ``EventConsumer`` of ``handlers`` on kombu's in-memory transport, as the embedded
    suite runs it, on a thread of its own; with ``relay``, a relay too, which publishes the
    retries and dead letters the consumer writes to its outbox. Its queue and exchange are
    made for it. A context manager: on exit both are stopped and their threads joined.
    ``options`` go to the ``EventConsumer`` (``max_attempts``, ``retry_base`` …)."""

    def __init__(self, service: str, db: Database, handlers: Mapping[str, Handler], *,
                 relay: bool = False, **options: Any) -> None:
        from servicekit.consumer import EventConsumer
        from servicekit.topology import Subscription

        self.db = db
        self.exchange = unique("memory.events")
        self.consumer = EventConsumer(
            service, db, handlers, broker_url="memory://", exchange=self.exchange,
            subscription=Subscription(unique(service), tuple(sorted(handlers))), **options)
        self.relay = relay
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> InMemoryConsumer:
        from kombu import Connection

        from servicekit.publishers import KombuPublisher
        from servicekit.relay import Relay
        from servicekit.topology import declare

        with Connection("memory://") as conn:
            declare(conn, self.exchange, [self.consumer.subscription])
        targets: list[Callable[[threading.Event], None]] = [self.consumer.run]
        if self.relay:
            targets.append(Relay(self.consumer.service, self.db,
                                 KombuPublisher("memory://", self.exchange),
                                 poll_interval=0.02).run)
        for target in targets:
            thread = threading.Thread(target=target, args=(self.stop,), daemon=True)
            thread.start()
            self.threads.append(thread)
        wait_for(self.consumer.ready.is_set, message="the consumer to start")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)

    def publish(self, *events: CloudEvent) -> None:
        """Publish ``events`` to the consumer's exchange, in order."""
        from kombu import Connection, Exchange, Producer

        with Connection("memory://") as conn:
            producer = Producer(conn.default_channel,
                                exchange=Exchange(self.exchange, type="topic"))
            for event in events:
                producer.publish(event.to_json(), routing_key=event.type,
                                 content_type="application/cloudevents+json")

    def handled(self) -> set[str]:
        """The ids of the events the consumer's inbox holds."""
        from sqlalchemy import select

        from servicekit.tables import inbox

        with self.db.transaction(reads_only=True) as session:
            return set(session.scalars(select(inbox.c.event_id).where(
                inbox.c.consumer == self.consumer.service)))


# -- a TCP proxy that can cut the line --------------------------------------------------------
class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``cut()`` drops every connection and refuses new
    ones until ``heal()``; ``stall()`` keeps connections open but stops forwarding bytes."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._stalled = threading.Event()
        self._closed = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _watched(self, client: socket.socket, upstream: socket.socket) -> list[socket.socket]:
        """The sides whose bytes are forwarded (a subclass can mute one direction)."""
        return [client, upstream]

    def _holding(self, client: socket.socket) -> bool:
        """Whether this pair forwards nothing for now (``stall``; a subclass can hold more)."""
        return self._stalled.is_set()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:  # a: client, b: upstream
        try:
            while not self._closed.is_set() and self._up.is_set():
                readable, _, _ = select.select(self._watched(a, b), [], [], 0.1)
                if self._holding(a):
                    continue
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()

    def heal(self) -> None:
        self._stalled.clear()
        self._up.set()

    def stall(self) -> None:
        self._stalled.set()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self.listener.close()


def ctrl_c_as_from_a_terminal() -> None:
    """For ``subprocess.Popen(preexec_fn=...)``: the child takes SIGINT as a terminal's Ctrl-C
    even when the tests themselves run as a background job. A shell without job control starts
    those with SIGINT ignored, the children inherit it, and a Python started so never installs
    its KeyboardInterrupt handler: a test of how Ctrl-C stops a process would wait for ever."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
