"""Suite benchmarks over servicekit's real outbox, relay and consumer (RabbitMQ + PostgreSQL).

* ``relay_drain``      fill N outbox rows with ``servicekit.outbox.emit``, then time
                       ``servicekit.relay.Relay`` + ``PikaPublisher`` draining them (msg/s).
* ``outbox_overhead``  tx/s of a bare state write in ``Database.transaction()`` and of the same
                       write plus ``emit`` (alternating blocks of 100, one connection).
* ``events_e2e``       N events pre-written to one service's outbox; a relay thread publishes
                       them, consumers in their own processes (``bench.sink``, the real
                       ``EventConsumer``; one, or replicas sharing the queue) record each in
                       their inbox and write a row; events/s from relay start to the N-th
                       handled row.

Each function takes an isolated vhost URL and fresh databases (``bench.common``).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, text

from bench.common import BenchError, running
from bench.suite_schema import EVENT_TYPE, SINK_SERVICE, bench_state

EXCHANGE = "ecourt.events"
SOURCE = "/bench/producer"


def _event_data(i: int) -> dict[str, object]:
    return {"seq": i, "case_id": str(uuid.uuid4()), "case_number": "(2025)粤0106民初1号",
            "court": "广州互联网法院", "parties": ["a" * 32, "b" * 32]}


def declare_sink_topology(amqp: str) -> None:
    """The exchange and the sink service's quorum queue + DLQ, exactly as the suite declares."""
    from kombu import Connection

    from servicekit.topology import Subscription, declare

    with Connection(amqp, connect_timeout=5) as conn:
        declare(conn, EXCHANGE, [Subscription(SINK_SERVICE, (EVENT_TYPE,))])


def delete_sink_queue(amqp: str) -> None:
    from kombu import Connection

    from servicekit.topology import Subscription

    with Connection(amqp, connect_timeout=5) as conn:
        conn.default_channel.queue_delete(Subscription(SINK_SERVICE, ()).queue)


def fill_outbox(db, n: int, per_tx: int = 500) -> None:  # type: ignore[no-untyped-def]
    """Write ``n`` outbox rows with the suite's ``emit`` (not timed)."""
    from servicekit.outbox import emit

    done = 0
    while done < n:
        with db.transaction() as session:
            for i in range(done, min(n, done + per_tx)):
                emit(session, EVENT_TYPE, _event_data(i), source=SOURCE, subject=f"case/{i}")
        done = min(n, done + per_tx)


def _unsent(db) -> int:  # type: ignore[no-untyped-def]
    from servicekit.outbox import backlog

    with db.transaction() as session:
        return backlog(session)


def relay_drain(amqp: str, db_url: str, n: int, timeout: float = 300.0) -> float:
    """msg/s of the relay publishing ``n`` waiting outbox rows and marking them sent."""
    from servicekit.db import Database
    from servicekit.publishers import PikaPublisher
    from servicekit.relay import Relay

    declare_sink_topology(amqp)  # publishes are mandatory: the type must reach a queue
    db = Database(db_url)
    publisher = PikaPublisher(amqp, EXCHANGE)
    try:
        with db.transaction() as session:
            session.execute(text("TRUNCATE outbox"))
        fill_outbox(db, n)
        relay = Relay("bench", db, publisher)
        deadline = time.monotonic() + timeout
        published = 0
        t0 = time.perf_counter()
        while published < n:
            got = relay.run_once()
            published += got
            if got == 0 or time.monotonic() > deadline:
                break
        elapsed = time.perf_counter() - t0
        left = _unsent(db)
        if left:
            raise BenchError(f"relay left {left} of {n} rows unsent")
        return n / elapsed
    finally:
        publisher.close()
        db.dispose()
        delete_sink_queue(amqp)


@dataclass
class Overhead:
    bare_tps: float
    emit_tps: float

    @property
    def added_cost(self) -> float:
        """Extra time per transaction that ``emit`` adds, as a fraction of the bare write."""
        return self.bare_tps / self.emit_tps - 1.0


def _tx_block(db, start: int, n: int, with_emit: bool) -> float:  # type: ignore[no-untyped-def]
    """Seconds for ``n`` transactions of a state write (plus ``emit`` if asked)."""
    from servicekit.outbox import emit

    t0 = time.perf_counter()
    for i in range(start, start + n):
        data = _event_data(i)
        with db.transaction() as session:
            session.execute(insert(bench_state).values(case_id=data["case_id"],
                                                       status="docketed"))
            if with_emit:
                emit(session, EVENT_TYPE, data, source=SOURCE, subject=f"case/{i}")
    return time.perf_counter() - t0


def outbox_overhead(db_url: str, n: int, block: int = 100, timeout: float = 120.0) -> Overhead:
    """Bare state write vs state write + ``emit``, both through ``Database.transaction()``.

    The two kinds alternate in blocks of ``block`` transactions on the same pooled connection
    (after a warm-up), so drift on a shared machine hits both alike; each rate is its ``n``
    transactions over the summed time of its blocks."""
    from servicekit.db import Database

    db = Database(db_url)
    try:
        _tx_block(db, 0, min(200, n), True)  # warm the pool and the statement caches
        spent = {False: 0.0, True: 0.0}
        done = {False: 0, True: 0}
        deadline = time.monotonic() + timeout
        while min(done.values()) < n:
            for with_emit in (False, True):
                size = min(block, n - done[with_emit])
                spent[with_emit] += _tx_block(db, done[with_emit], size, with_emit)
                done[with_emit] += size
            if time.monotonic() > deadline:
                raise BenchError(f"outbox_overhead exceeded {timeout}s")
        with db.transaction() as session:
            session.execute(text("TRUNCATE outbox, bench_state"))
        return Overhead(n / spent[False], n / spent[True])
    finally:
        db.dispose()


def events_e2e(amqp: str, producer_url: str, sink_url: str, n: int, log_dir: Path,
               consumers: int = 1, timeout: float = 300.0) -> float:
    """events/s from the relay's start to the N-th row written by the consumers' handler.

    ``consumers`` processes share the queue, as replicas of one service's consumer do."""
    import contextlib
    import threading

    import psycopg

    from servicekit.db import Database
    from servicekit.publishers import PikaPublisher
    from servicekit.relay import Relay

    declare_sink_topology(amqp)
    db = Database(producer_url)
    tag = uuid.uuid4().hex[:8]
    ready = [log_dir / f"sink-ready-{tag}-{i}" for i in range(consumers)]
    sink_dsn = sink_url.replace("postgresql+psycopg://", "postgresql://")

    def sink_args(ready_file: Path) -> list[str]:
        return [sys.executable, "-m", "bench.sink", "--db", sink_url, "--broker", amqp,
                "--exchange", EXCHANGE, "--type", EVENT_TYPE, "--ready", str(ready_file),
                "--seconds", str(timeout + 60)]

    stop = threading.Event()
    relay_thread = None
    try:
        with db.transaction() as session:
            session.execute(text("TRUNCATE outbox"))
        with psycopg.connect(sink_dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE bench_state, inbox")
        fill_outbox(db, n)
        with contextlib.ExitStack() as stack:
            sinks = [stack.enter_context(running(sink_args(r), log_dir / f"sink{i}.log"))
                     for i, r in enumerate(ready)]
            watch = stack.enter_context(psycopg.connect(sink_dsn, autocommit=True))

            def failed() -> str | None:
                for sink in sinks:
                    if sink.popen.poll() is not None:
                        return f"consumer exit code {sink.popen.poll()}: {sink.tail(800)}"
                return None

            deadline = time.monotonic() + 60
            while not all(r.exists() for r in ready):
                if failed() or time.monotonic() > deadline:
                    raise BenchError(f"consumer did not start: {failed() or 'timeout'}")
                time.sleep(0.05)
            relay = Relay("bench", db, PikaPublisher(amqp, EXCHANGE))
            relay_thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
            t0 = time.perf_counter()
            relay_thread.start()
            deadline = time.monotonic() + timeout
            handled = 0
            while handled < n:
                if time.monotonic() > deadline or failed():
                    raise BenchError(f"only {handled}/{n} events handled ({failed()})")
                time.sleep(0.02)
                handled = watch.execute("SELECT count(*) FROM bench_state").fetchone()[0]
            elapsed = time.perf_counter() - t0
            inbox_rows = watch.execute("SELECT count(*) FROM inbox WHERE consumer = %s",
                                       (SINK_SERVICE,)).fetchone()[0]
            if inbox_rows != n or handled != n:
                raise BenchError(f"{handled} rows and {inbox_rows} inbox rows for {n} events")
        return n / elapsed
    finally:
        stop.set()
        if relay_thread is not None:
            relay_thread.join(15)
        db.dispose()
        for r in ready:
            r.unlink(missing_ok=True)
        delete_sink_queue(amqp)


def sample_event_size() -> int:
    """Bytes of one outbox body as the suite writes it (for the README's context)."""
    from servicekit.envelope import CloudEvent

    return len(json.dumps(CloudEvent(type=EVENT_TYPE, source=SOURCE, data=_event_data(0))
                          .to_dict(), ensure_ascii=False).encode())
