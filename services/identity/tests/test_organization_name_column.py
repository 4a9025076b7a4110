"""An organization's name is kept in 100 characters, as its account's name and the
registration form (23ce13e) keep it; the column was 200. Migration 0010 shrinks it, and
refuses, naming the rows by id, when a stored name is longer: SQLite kept such names before
the form was capped, and a legal name is not cut short by a migration. On SQLite and
PostgreSQL (``database_url``, conftest)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import DataError

from ecourt import registry
from servicekit import migrations

WHERE = registry.get("identity").migrations
NOW = "2026-12-01 08:00:00"


def _organization(engine: Engine, org_id: str, uscc: str, name: str) -> None:
    """An organization of ``name`` and its account (a name of 100 characters: the account's
    column's), with their court."""
    with engine.begin() as conn:
        if conn.execute(text("SELECT count(*) FROM courts")).scalar() == 0:
            conn.execute(text("INSERT INTO courts (code, name, created_at) VALUES "
                              "('粤01', '广州市中级人民法院', :now)"), {"now": NOW})
        conn.execute(text(
            "INSERT INTO accounts (id, kind, name, password_hash, roles, status, created_at)"
            " VALUES (:id, 'organization', :name, 'x', 'party', 'pending_review', :now)"),
            {"id": org_id, "name": name[:100], "now": NOW})
        conn.execute(text(
            "INSERT INTO organizations (id, uscc, uscc_check_failed, name, legal_representative,"
            " court, applicant_account_id, licence_sha256, licence_content_type,"
            " licence_filename, licence_size, status, submitted_at, review_deadline, version)"
            " VALUES (:id, :uscc, false, :name, 'r', '粤01', :id, 's', 'image/png', 'l.png',"
            " 1, 'pending', :now, :now, 1)"), {"id": org_id, "uscc": uscc, "name": name,
                                              "now": NOW})


def _revision(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar())


def test_the_column_holds_100_characters_after_the_migration(database_url: str) -> None:
    migrations.upgrade(WHERE, database_url)
    engine = create_engine(database_url)
    try:
        [name] = [c for c in inspect(engine).get_columns("organizations")
                  if c["name"] == "name"]
        assert name["type"].length == 100
        _organization(engine, "o100", "91440101MA0000007B", "广" * 100)
        if engine.dialect.name == "postgresql":  # SQLite does not hold a column to its length
            with pytest.raises(DataError):
                _organization(engine, "o101", "91440104000000000X", "广" * 101)
    finally:
        engine.dispose()


def test_a_longer_name_stored_stops_the_migration_naming_its_row(database_url: str) -> None:
    """Nothing is cut or changed: the migration stops at 0009 with the rows' ids (not their
    names); once a person has corrected the name, it runs."""
    migrations.upgrade(WHERE, database_url, "0009")
    engine = create_engine(database_url)
    try:
        long_name = "广州" + "虚构" * 70 + "有限公司"  # 146 characters
        _organization(engine, "org-long", "91440101MA0000007B", long_name)
        _organization(engine, "org-fine", "91440104000000000X", "广州虚构科技有限公司")
        with pytest.raises(RuntimeError) as refused:
            migrations.upgrade(WHERE, database_url)
        message = str(refused.value)
        assert "org-long" in message and "100" in message
        assert "org-fine" not in message and long_name not in message
        assert _revision(engine) == "0009"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM organizations WHERE id = 'org-long'")
                                ).scalar() == long_name
        with engine.begin() as conn:
            conn.execute(text("UPDATE organizations SET name = :n WHERE id = 'org-long'"),
                         {"n": long_name[:20]})
        migrations.upgrade(WHERE, database_url)
        assert _revision(engine) == "0010"
    finally:
        engine.dispose()
