"""Each service's schema comes from its own alembic migrations, in both tiers; a test fails
as soon as models and migrations drift apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecourt import registry
from servicekit import migrations
from servicekit.testing import pg_databases

SERVICES = list(registry.SERVICES)


@pytest.mark.parametrize("name", SERVICES)
def test_sqlite_schema_from_migrations_matches_models(name: str, tmp_path: Path) -> None:
    definition = registry.get(name)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrations.upgrade(definition.migrations, url)
    assert migrations.drift(definition.metadata, url) == []


@pytest.mark.real
def test_postgres_schema_from_migrations_matches_models(infrastructure: None) -> None:
    with pg_databases(SERVICES) as urls:
        for name in SERVICES:
            definition = registry.get(name)
            migrations.upgrade(definition.migrations, urls[name])
            assert migrations.drift(definition.metadata, urls[name]) == [], name


def test_drift_is_detected(tmp_path: Path) -> None:
    """The check can fail: a column the migrations do not create is reported."""
    from sqlalchemy import Column, MetaData, String

    definition = registry.get("delivery")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrations.upgrade(definition.migrations, url)
    extended = MetaData()
    for table in definition.metadata.tables.values():
        table.to_metadata(extended)
    extended.tables["notifications"].append_column(Column("channel", String(20)))
    assert migrations.drift(extended, url) != []


def test_no_production_code_calls_create_all() -> None:
    root = Path(__file__).resolve().parent.parent
    offenders = [p for folder in ("servicekit", "services", "gateway", "ecourt")
                 for p in (root / folder).rglob("*.py")
                 if "/tests/" not in str(p) and "create_all(" in p.read_text(encoding="utf-8")]
    assert offenders == []
