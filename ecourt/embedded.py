"""The suite in one process: every service, the gateway, relays and consumers as threads.

The default is the embedded tier (SQLite files under the data folder, kombu's in-memory bus).
Given PostgreSQL URLs and an AMQP broker URL the very same object runs the real tier — the
tests use that to drive the whole suite against the real PostgreSQL and RabbitMQ.

kombu's ``memory`` transport works only between threads of one process and keeps nothing on
disk: the embedded tier is for a first run, demos and tests, not for production. So that a
stop, a crash or a restart loses no event, each run publishes again what the previous run of
the same data folder had sent and its consumers had not handled (``Suite.republish_last_run``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from flask import Flask
from kombu import Connection
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer

from ecourt import registry
from ecourt.embedded_server import InFlight, listen, term_as_interrupt
from ecourt.runtime import local_verifier, make_runtime
from gateway.app import create_gateway
from gateway.ratelimit import MemoryRateLimiter, limits_from_env
from servicekit.config import DEFAULT_EXCHANGE, Settings
from servicekit.consumer import EventConsumer
from servicekit.db import utcnow
from servicekit.outbox import mark_unsent, sent_since
from servicekit.publishers import TOPIC, make_publisher
from servicekit.relay import Relay
from servicekit.service import Runtime
from servicekit.tables import inbox
from servicekit.topology import declare
from services.matters.escalation import Scheduler, escalate_overdue
from services.notifier.app import provider_for
from services.notifier.pika_consumer import PikaSmsConsumer

log = logging.getLogger(__name__)

#: in the data folder: when the relays of the last run on the in-memory bus started
RUN_MARKER = "memory-bus-run-started"


class Suite:
    def __init__(self, data_dir: Path | str = "data", *, broker_url: str = "memory://",
                 exchange: str = DEFAULT_EXCHANGE, queue_prefix: str = "",
                 database_urls: dict[str, str] | None = None, retry_base: float = 1.0,
                 max_attempts: int = 5, rate_limit: int | None = None,
                 rate_window: float | None = None,
                 notifier_with_pika: bool | None = None,
                 scheduler_interval: float = 60.0) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.environ["ECOURT_DATA_DIR"] = str(self.data_dir)
        self.broker_url = broker_url
        self.exchange = exchange
        self.queue_prefix = queue_prefix
        self.scheduler_interval = scheduler_interval
        self.notifier_with_pika = (not broker_url.startswith("memory")
                                   if notifier_with_pika is None else notifier_with_pika)
        self.verifier = local_verifier()
        self.apps: dict[str, Flask] = {}
        self.runtimes: dict[str, Runtime] = {}
        urls = database_urls or {}
        for name, definition in registry.SERVICES.items():
            settings = Settings.from_env(name, broker_url=broker_url, exchange=exchange,
                                         retry_base_seconds=retry_base,
                                         max_attempts=max_attempts,
                                         **({"database_url": urls[name]} if name in urls else {}))
            rt = make_runtime(definition, settings, self.verifier, self.apps)
            self.runtimes[name] = rt
            if definition.build_app is not None:
                self.apps[name] = definition.build_app(rt)
        # the gateway's limits: as given, else GATEWAY_RATE_LIMIT/_WINDOW, as when distributed
        env_limit, env_window = limits_from_env()
        self.gateway = create_gateway(upstreams=dict(self.apps), verifier=self.verifier,
                                      rate_limiter=MemoryRateLimiter(rate_limit or env_limit,
                                                                     rate_window or env_window))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.consumers: dict[str, EventConsumer | PikaSmsConsumer] = {}
        self.relays: dict[str, Relay] = {}
        #: rows the last ``republish_last_run`` marked unsent
        self.republished = 0

    # -- background work ----------------------------------------------------------------------
    def declare_topology(self) -> None:
        with Connection(self.broker_url, connect_timeout=5) as conn:
            declare(conn, self.exchange, registry.subscriptions(self.queue_prefix))

    def start_workers(self, *, relays: bool = True, consumers: bool = True) -> None:
        """Start a relay per service and a consumer per consuming service, as threads."""
        self.declare_topology()
        if relays and self.broker_url.startswith("memory"):
            self.republish_last_run()
        for name, rt in self.runtimes.items():
            if relays:
                relay = Relay(name, rt.db, make_publisher(self.broker_url, self.exchange),
                              poll_interval=0.1, retention=rt.settings.retention)
                self.relays[name] = relay
                self._spawn(f"relay-{name}", relay.run)
            if consumers and registry.SERVICES[name].consumes:
                consumer = self.make_consumer(name)
                self.consumers[name] = consumer
                self._spawn(f"consumer-{name}", consumer.run)
        if relays and self.scheduler_interval:
            scheduler = Scheduler(self.runtimes["matters"].db, self.scheduler_interval)
            self._spawn("scheduler", scheduler.run)
        for consumer in self.consumers.values():
            consumer.ready.wait(10)

    def republish_last_run(self) -> int:
        """Publish again what the previous run of this data folder sent and its consumers may
        not have received.

        The in-memory bus keeps nothing when the process ends, so whatever the last run's
        relays had published and its consumers had not yet handled — a stop, a crash or a
        restart in the middle of traffic — would be lost, marked sent in the outbox. Each run
        notes when its relays started (``RUN_MARKER``); the next run looks at every row sent
        since then and marks it unsent again unless each consumer of its type has it in its
        inbox already (so a restart after a long demo does not replay the demo). Rows sent to
        one queue (a retry, a dead letter) are always sent again: the dead-letter queue was in
        memory too. Rows older than a service's inbox retention are left alone: their ids may
        be gone from the inbox. Returns how many rows were marked unsent.
        """
        marker = self.data_dir / RUN_MARKER
        started = utcnow()
        previous = _read_marker(marker)
        count = 0
        if previous is not None:
            consumers_of: dict[str, list[str]] = {}
            for sub in registry.subscriptions(self.queue_prefix):
                for type_ in sub.types:
                    consumers_of.setdefault(type_, []).append(sub.service)
            handled: dict[str, set[str]] = {}
            for name, rt in self.runtimes.items():
                since = previous
                keep = rt.settings.retention.inbox
                if keep is not None:
                    since = max(since, started - keep)
                with rt.db.transaction() as session:
                    rows = sent_since(session, since)
                again = [row.id for row in rows
                         if row.exchange != TOPIC or not all(
                             row.event_id in self._inbox_since(c, previous, handled)
                             for c in consumers_of.get(row.type, ()))]
                if again:
                    with rt.db.transaction() as session:
                        mark_unsent(session, again)
                    log.info("%s: publishing again %d event(s) the last run had sent", name,
                             len(again))
                count += len(again)
        marker.write_text(started.isoformat(), encoding="utf-8")
        self.republished = count
        return count

    def _inbox_since(self, consumer: str, since: datetime,
                     cache: dict[str, set[str]]) -> set[str]:
        """The event ids ``consumer`` has handled since ``since``, the last run's start (read
        once per start, whichever service's rows ask first)."""
        if consumer not in cache:
            with self.runtimes[consumer].db.transaction() as session:
                cache[consumer] = set(session.scalars(
                    select(inbox.c.event_id).where(inbox.c.consumer == consumer,
                                                   inbox.c.received_at >= since)))
        return cache[consumer]

    def run_escalation(self, now: datetime) -> int:
        """One pass of the escalation scheduler at ``now`` (tests drive the clock)."""
        return escalate_overdue(self.runtimes["matters"].db, now)

    def make_consumer(self, name: str) -> EventConsumer | PikaSmsConsumer:
        rt = self.runtimes[name]
        sub = registry.subscription(name, self.queue_prefix)
        if name == "notifier" and self.notifier_with_pika:
            return PikaSmsConsumer(rt.db, provider_for(rt),
                                   broker_url=self.broker_url, queue=sub.queue,
                                   secret=rt.settings.service_secret,
                                   max_attempts=rt.settings.max_attempts)
        return EventConsumer(name, rt.db, registry.SERVICES[name].handlers(rt),
                             broker_url=self.broker_url, exchange=self.exchange,
                             subscription=sub, max_attempts=rt.settings.max_attempts,
                             retry_base=rt.settings.retry_base_seconds,
                             # the notifier's handler sends an SMS, which no rollback takes
                             # back: a batch redone after one failed send would send the
                             # others twice, so it handles one event per transaction
                             batch_size=1 if name == "notifier" else 100)

    def _spawn(self, name: str, target) -> None:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=target, args=(self._stop,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers, waiting ``timeout`` seconds in all (not per thread) for them to
        finish, then dispose every service's database engine.

        A worker still running then is named in the log and left (they are daemon threads),
        and no engine is disposed: disposing swaps an engine's pool, so the connection the
        worker holds would no longer be the engine's (closed only when garbage-collected)
        and its next transaction would open a fresh pool behind the stop. Not only its own
        service's engine may be under it — a handler reaches other services' apps in process
        (``InternalClient``) — so the simplest rule that is right is none at all. The
        engines close with the process; ``stop`` again once the workers have finished
        disposes them.
        """
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = [thread.name for thread in self._threads if thread.is_alive()]
        if stuck:
            log.warning("workers still running after %.0f s, databases left open: %s",
                        timeout, ", ".join(stuck))
            return
        for rt in self.runtimes.values():
            rt.db.dispose()

    # -- serving ------------------------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = 8080,
              drain_timeout: float = 20.0) -> None:
        """Serve the gateway until Ctrl-C or TERM; then stop accepting, let the requests in
        flight finish (``drain_timeout`` seconds at most, as gunicorn's graceful timeout),
        and stop the workers. (``run`` binds the port before the workers start.)"""
        server = listen(host, port)
        term_as_interrupt()
        self.serve_on(server, drain_timeout)

    def serve_on(self, server: BaseWSGIServer, drain_timeout: float = 20.0) -> None:
        """``serve`` on a socket ``listen`` has bound."""
        in_flight = InFlight(self.gateway)
        server.app = in_flight
        log.info("eCourt suite (embedded) serving on http://%s:%s", server.host, server.port)
        try:
            server.serve_forever()
        finally:
            server.server_close()
            # werkzeug's request threads are daemon threads: the process would end under a
            # request that is still being handled (its answer lost, maybe after its commit)
            try:
                if not in_flight.drained(drain_timeout):
                    log.warning("%d request(s) still running after %.0f s; stopping anyway",
                                in_flight.count, drain_timeout)
            except KeyboardInterrupt:
                # a second Ctrl-C or TERM means "now": skip the wait, never the stop (the
                # relays and consumers end in order, the databases are disposed)
                log.warning("interrupted again: stopping with %d request(s) still running",
                            in_flight.count)
            self.stop()


def run(data_dir: Path | str, host: str, port: int,
        announce: Callable[[str], None] = log.info) -> None:
    """``ecourt run``: the suite on ``host:port`` until Ctrl-C or TERM.

    The order matters. The port is bound first: one in use (or not ours to bind) is a
    ``ConfigError`` naming it before anything else has happened — no database touched, no
    relay started (a relay would have moved the data folder's ``RUN_MARKER``, so the next
    run would no longer publish again what the last real run left unconsumed). TERM is then
    made to stop the suite as Ctrl-C does (Python's own SIGINT handler is in place from the
    start) before the suite is built and its workers started, so a process manager's TERM
    during a start-up of several seconds stops in order — socket closed, the workers already
    started stopped, databases disposed — instead of killing the process mid-way.
    ``announce`` is told the address once the workers run.
    """
    server = listen(host, port)
    term_as_interrupt()
    suite: Suite | None = None
    try:
        suite = Suite(data_dir)
        suite.start_workers()
    except BaseException as exc:
        server.server_close()
        if suite is not None:
            suite.stop()
        if not isinstance(exc, KeyboardInterrupt):
            raise
        log.info("stopped during start-up")
        return
    announce(f"eCourt suite running on http://{host}:{server.port}  (docs: /docs)")
    suite.serve_on(server)


def _read_marker(path: Path) -> datetime | None:
    try:
        when = datetime.fromisoformat(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return when if when.tzinfo is not None else None
