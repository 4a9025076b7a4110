"""``ecourt``: run the suite, one service, its relay or its consumer; migrate; operate DLQs."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from servicekit import logs
from servicekit.config import ConfigError, Settings, env_int

log = logging.getLogger("ecourt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecourt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the embedded suite: every service in one process")
    run.add_argument("--host", default=os.environ.get("ECOURT_HOST", "127.0.0.1"))
    run.add_argument("--port", type=int, default=None, help="default: ECOURT_PORT or 8080")
    run.add_argument("--data-dir", default=os.environ.get("ECOURT_DATA_DIR", "data"))

    serve = sub.add_parser("serve", help="one service (or the gateway) under gunicorn")
    serve.add_argument("service")
    serve.add_argument("--bind", default="0.0.0.0:8000")  # noqa: S104 - containers listen on all
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--no-migrate", action="store_true",
                       help="do not run migrations before serving")

    for name, text in (("relay", "publish a service's outbox to the broker"),
                       ("consume", "run a service's event consumer")):
        p = sub.add_parser(name, help=text)
        p.add_argument("service")
        p.add_argument("--metrics-port", type=int, default=0)

    migrate = sub.add_parser("migrate", help="upgrade databases to the newest migration")
    migrate.add_argument("service", nargs="?")

    dlq = sub.add_parser("dlq", help="dead-letter queues")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_sub.add_parser("list", help="list a service's dead letters")
    dlq_list.add_argument("service")
    dlq_replay = dlq_sub.add_parser("replay", help="re-deliver dead letters to the service")
    dlq_replay.add_argument("service")
    dlq_replay.add_argument("event_id", nargs="?")

    trail = sub.add_parser("audit", help="a service's audit trail")
    trail_sub = trail.add_subparsers(dest="audit_command", required=True)
    verify = trail_sub.add_parser("verify", help="recompute the hash chain (exit 1 if broken)")
    verify.add_argument("service")
    seal = trail_sub.add_parser("seal", help="chain the entries waiting (the relay does it)")
    seal.add_argument("service")
    lines = trail_sub.add_parser("verify-log", help="check the chained audit lines (the gateway's "
                                 "refusals, the services' granted reads) in collected JSON "
                                 "logs (exit 1 if a chain is broken)")
    lines.add_argument("files", nargs="+", type=Path,
                       help="every log file of the period, oldest first")
    show = trail_sub.add_parser("show", help="the newest entries, oldest first")
    show.add_argument("service")
    show.add_argument("--subject", help="one object's history, e.g. case:<id>")
    show.add_argument("--limit", type=int, default=50)

    blobs = sub.add_parser("blobs", help="a service's blob store (uploads, issued PDFs)")
    blobs_sub = blobs.add_subparsers(dest="blobs_command", required=True)
    gc = blobs_sub.add_parser("gc", help="remove blobs no row refers to, older than "
                              "ECOURT_BLOB_GC_GRACE_HOURS (24)")
    gc.add_argument("service")
    gc.add_argument("--dry-run", action="store_true", help="count, remove nothing")
    gc.add_argument("--empty-database-ok", action="store_true",
                    help="collect even though the database refers to no blob at all (by "
                         "default that is refused: most likely the wrong database)")

    sub.add_parser("openapi", help="write contracts/openapi/<service>.json")

    scheduler = sub.add_parser("scheduler", help="run a service's deadline scheduler")
    scheduler.add_argument("service", choices=["matters"])
    scheduler.add_argument("--interval", type=float, default=60.0, help="seconds between runs")
    scheduler.add_argument("--metrics-port", type=int, default=0)

    admin = sub.add_parser("create-admin",
                           help="create a court's administrator in identity (migrates first)")
    admin.add_argument("--court", required=True, help="court code, e.g. 粤01")
    admin.add_argument("--court-name", required=True, help="e.g. 广州市中级人民法院")
    admin.add_argument("--name", required=True)
    admin.add_argument("--phone", required=True)
    admin.add_argument("--department", default=None)
    admin.add_argument("--password", default=None,
                       help="better: set ECOURT_ADMIN_PASSWORD (kept out of shell history)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: how to see where a process
    # that will not stop is waiting, without stopping it (not where stderr is no file, as
    # under a test's capture)
    with contextlib.suppress(io.UnsupportedOperation, ValueError, AttributeError):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    service = getattr(args, "service", None) or args.command
    logs.configure(service, os.environ.get("ECOURT_LOG_LEVEL", "INFO"))
    handler = COMMANDS[args.command]
    try:
        if args.command == "run" and args.port is None:
            args.port = env_int("ECOURT_PORT", 8080, minimum=0)
        return handler(args) or 0
    except ConfigError as exc:  # a bad setting: say which and why, not a traceback
        print(f"ecourt {args.command}: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from ecourt.embedded import run

    # binds the port before anything starts: one in use is a ConfigError (exit 2)
    run(args.data_dir, args.host, args.port, announce=lambda line: print(line, flush=True))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from ecourt import registry
    from servicekit import migrations

    names = [args.service] if args.service else list(registry.SERVICES)
    for name in names:
        definition = registry.get(name)
        migrations.upgrade(definition.migrations, Settings.from_env(name).database_url)
        log.info("migrated %s", name)
    return 0


def _runtime(name: str):  # type: ignore[no-untyped-def]
    from ecourt import registry
    from ecourt.runtime import distributed_verifier, make_runtime

    return make_runtime(registry.get(name), Settings.from_env(name), distributed_verifier(),
                        migrate=False)


def _until_signalled() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _metrics_server(port: int) -> None:
    if port:
        from prometheus_client import start_http_server

        start_http_server(port)


def _relay(args: argparse.Namespace) -> int:
    from servicekit.publishers import make_publisher
    from servicekit.relay import Relay

    rt = _runtime(args.service)
    _metrics_server(args.metrics_port)
    relay = Relay(args.service, rt.db, make_publisher(rt.settings.broker_url,
                                                      rt.settings.exchange),
                  retention=rt.settings.retention)
    relay.run(_until_signalled())
    return 0


def _consume(args: argparse.Namespace) -> int:
    from ecourt import registry

    rt = _runtime(args.service)
    _metrics_server(args.metrics_port)
    if not registry.get(args.service).consumes:
        # Deployments run one consumer per service; one that consumes nothing yet idles
        # (serving its metrics) instead of crash-looping.
        log.info("%s consumes no events yet; idling until stopped", args.service)
        _until_signalled().wait()
        return 0
    sub = registry.subscription(args.service, os.environ.get("ECOURT_QUEUE_PREFIX", ""))
    if args.service == "notifier":
        from kombu import Connection

        from servicekit.topology import declare
        from services.notifier.app import provider_for
        from services.notifier.pika_consumer import PikaSmsConsumer

        with Connection(rt.settings.broker_url, connect_timeout=5) as conn:
            declare(conn, rt.settings.exchange, [sub])
        consumer = PikaSmsConsumer(rt.db, provider_for(rt), broker_url=rt.settings.broker_url,
                                   queue=sub.queue, secret=rt.settings.service_secret,
                                   max_attempts=rt.settings.max_attempts)
        consumer.run(_until_signalled())
        return 0
    from servicekit.consumer import EventConsumer

    consumer = EventConsumer(args.service, rt.db, registry.get(args.service).handlers(rt),
                             broker_url=rt.settings.broker_url, exchange=rt.settings.exchange,
                             subscription=sub, max_attempts=rt.settings.max_attempts,
                             retry_base=rt.settings.retry_base_seconds,
                             workers=rt.settings.consumer_workers)
    consumer.run(_until_signalled())
    return 0


def _dlq(args: argparse.Namespace) -> int:
    from ecourt import registry
    from servicekit import dlq

    settings = Settings.from_env(args.service)
    sub = registry.subscription(args.service, os.environ.get("ECOURT_QUEUE_PREFIX", ""))
    if args.dlq_command == "list":
        letters = dlq.list_dead_letters(settings.broker_url, sub.dlq)
        for letter in letters:
            print(f"{letter.event_id}\t{letter.type}\tattempts={letter.attempts}\t"
                  f"{letter.error}")
        print(f"{len(letters)} dead letter(s) in {sub.dlq}", file=sys.stderr)
        return 0
    replayed = dlq.replay(settings.broker_url, sub.dlq, sub.queue, args.event_id)
    for event_id in replayed:
        print(f"replayed {event_id}")
    if args.event_id and not replayed:
        print(f"no dead letter {args.event_id} in {sub.dlq}", file=sys.stderr)
        return 1
    return 0


def _audit_log(args: argparse.Namespace) -> int:
    """``ecourt audit verify-log``: the gateway's refusals and the services' granted reads,
    chained per process."""
    import json

    from gateway.app import AUDIT_FIELDS
    from servicekit.chain import shown, verify_lines

    def parsed() -> Iterator[dict[str, object]]:
        for path in args.files:
            for raw in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    line = json.loads(raw)
                    if isinstance(line, dict):
                        yield line

    checks = verify_lines(parsed(), AUDIT_FIELDS)
    for chain, check in sorted(checks.items()):
        if check.ok:
            print(f"{chain}: {check.entries} lines chained, head {shown(check.head_hash)}")
        else:
            print(f"{chain}: BROKEN at line {check.broken_at}: {check.problem}",
                  file=sys.stderr)
    if not checks:
        print("no chained audit lines found", file=sys.stderr)
    return 0 if all(check.ok for check in checks.values()) else 1


def _audit(args: argparse.Namespace) -> int:
    if args.audit_command == "verify-log":
        return _audit_log(args)
    from sqlalchemy import select

    from servicekit import audit
    from servicekit.chain import shown
    from servicekit.db import Database
    from servicekit.tables import audit_trail

    db = Database(Settings.from_env(args.service).database_url)
    try:
        if args.audit_command == "seal":
            total = 0
            while (count := audit.seal(db, service=args.service)) > 0:
                total += count
            print(f"sealed {total} entries")
            return 0
        with db.transaction() as session:
            if args.audit_command == "verify":
                check, waiting = audit.verify(session), audit.unsealed(session)
                late = audit.sealed_late(session)
            else:
                query = select(audit_trail).order_by(audit_trail.c.id.desc()).limit(args.limit)
                if args.subject:
                    query = query.where(audit_trail.c.subject == args.subject)
                rows = list(reversed(session.execute(query).all()))
    finally:
        db.dispose()
    if args.audit_command == "show":
        for row in rows:
            print("\t".join([row.at.isoformat(timespec="seconds"), row.actor, row.source,
                             row.action, row.subject, row.outcome, row.request_id or "-",
                             row.detail]))
        return 0
    if not check.ok:
        where = f" at position {check.broken_at}" if check.broken_at is not None else ""
        print(f"audit trail of {args.service} BROKEN{where}: {check.problem}", file=sys.stderr)
        return 1
    print(f"audit trail of {args.service}: {check.entries} entries chained, head "
          f"{shown(check.head_hash)} (as the relay logs it); {waiting} waiting to be sealed")
    if late:
        print(f"{len(late)} entries were sealed over an hour after their time (first id "
              f"{late[0]}): written while no relay ran, or inserted back-dated; look at them",
              file=sys.stderr)
    return 0


def _blobs(args: argparse.Namespace) -> int:
    """``ecourt blobs gc``: the garbage a refused request or a crash left in the store."""
    from ecourt import registry
    from servicekit.blob_gc import collect, grace_seconds, holds_references
    from servicekit.db import Database
    from servicekit.service import Runtime

    try:
        definition = registry.get(args.service)
    except KeyError as exc:
        print(f"ecourt blobs gc: {exc.args[0]}", file=sys.stderr)
        return 2
    if definition.blob_store is None:
        print(f"ecourt blobs gc: {args.service} keeps no blobs (services with a blob store: "
              f"{', '.join(n for n, s in registry.SERVICES.items() if s.blob_store)})",
              file=sys.stderr)
        return 2
    grace = grace_seconds()  # a bad setting stops here, before anything is looked at
    settings = Settings.from_env(args.service)
    rt = Runtime(settings, Database(settings.database_url), verifier=None)
    store, columns = definition.blob_store(rt), definition.blob_columns
    try:
        if not args.dry_run and not args.empty_database_ok:
            preview = collect(store, rt.db, definition.metadata, columns, grace=grace,
                              dry_run=True)
            if preview.removed and not holds_references(rt.db, definition.metadata, columns):
                print(f"ecourt blobs gc: refused: {args.service}'s database refers to no blob "
                      f"at all, yet {preview.removed} old blob(s) would go — is "
                      f"{args.service.upper()}_DATABASE_URL this service's database? "
                      "(--empty-database-ok if it truly holds none)", file=sys.stderr)
                return 1
        report = collect(store, rt.db, definition.metadata, columns, grace=grace,
                         dry_run=args.dry_run)
    finally:
        rt.db.dispose()
    print(f"{args.service}: {report.line()}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ecourt-prom-")
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    # a bad setting is told here, once (exit 2, naming it), not as a traceback in every
    # gunicorn worker and gunicorn's "Worker failed to boot" (exit 3)
    from ecourt.serving import check_settings

    check_settings(args.service)
    if args.service != "gateway" and not args.no_migrate:
        _migrate(argparse.Namespace(service=args.service))
    from ecourt.serving import serve

    serve(args.service, args.bind, args.workers)
    return 0


def _openapi(_args: argparse.Namespace) -> int:
    from ecourt.contracts import write_openapi

    for path in write_openapi():
        print(path)
    return 0


def _scheduler(args: argparse.Namespace) -> int:
    """The escalation ladder as its own process (replicas are safe: rows are locked)."""
    from services.matters.escalation import Scheduler

    rt = _runtime(args.service)
    _metrics_server(args.metrics_port)
    Scheduler(rt.db, args.interval).run(_until_signalled())
    return 0


def _create_admin(args: argparse.Namespace) -> int:
    from services.identity.admin import AdminError, create_admin, password_from

    try:
        created = create_admin(court=args.court, court_name=args.court_name, name=args.name,
                               phone=args.phone, password=password_from(args.password),
                               department=args.department)
    except AdminError as exc:
        print(f"create-admin: {exc}", file=sys.stderr)
        return 1
    print(f"created court administrator {created.account_id} of {created.court} "
          f"(sign in with {created.phone_masked})")
    return 0


COMMANDS = {"run": _run, "migrate": _migrate, "relay": _relay, "consume": _consume,
            "dlq": _dlq, "audit": _audit, "blobs": _blobs, "serve": _serve, "openapi": _openapi,
            "create-admin": _create_admin, "scheduler": _scheduler}

if __name__ == "__main__":
    sys.exit(main())
