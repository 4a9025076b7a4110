"""Schema for the suite benches: the kit's tables from a real service's migrations, plus one
bench-only state table (``bench_state``) that the trivial writes and handlers touch."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, func

from bench.common import ROOT, BenchError

SINK_SERVICE = "benchsink"
EVENT_TYPE = "bench.case.docketed"

_BENCH_MD = MetaData()
bench_state = Table(
    "bench_state",
    _BENCH_MD,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("case_id", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: Services whose migrations we prefer, in order; any service with migrations/env.py will do.
PREFERRED = ("identity", "filing", "matters", "delivery", "documents", "bankruptcy")


def migrations_dir() -> tuple[str, Path]:
    """(service, script location) of a service's alembic migrations in this checkout."""
    services = ROOT / "services"
    candidates = [services / name / "migrations" for name in PREFERRED]
    candidates += sorted(p for p in services.glob("*/migrations") if p not in candidates)
    for path in candidates:
        if (path / "env.py").exists() and any((path / "versions").glob("*.py")):
            return path.parent.name, path
    raise BenchError("no service under services/ has alembic migrations yet")


def prepare(url: str) -> str:
    """Migrate a fresh database to a service's head, add ``bench_state``; returns a note.

    Falls back to the kit's table definitions (``servicekit.tables``) only when no service has
    migrations yet, and says so in the note (which goes into RESULTS.md)."""
    from sqlalchemy import create_engine, inspect, pool

    from servicekit import migrations

    try:
        service, location = migrations_dir()
    except BenchError:
        service, location = "", None
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        if location is not None:
            migrations.upgrade(location, url)
        else:  # no service migrations in the checkout yet: the kit's own table definitions
            from servicekit import tables

            kit = MetaData()
            tables.define(kit)
            kit.create_all(engine)
        _BENCH_MD.create_all(engine)
        missing = {"outbox", "inbox"} - set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    if missing:
        raise BenchError(f"{service or 'servicekit.tables'} did not create {sorted(missing)}")
    if location is None:
        return ("schema from servicekit.tables via create_all (no service migrations found) "
                "+ bench_state")
    return f"schema from services/{service}/migrations (alembic head) + bench_state"
