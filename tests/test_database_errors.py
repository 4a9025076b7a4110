"""Which database errors mean "try again" (``servicekit.db.database_unreachable``: a service
answers them with 503, the notifier retries in place): a database that cannot be reached or is
busy, never a statement that is wrong. Real SQLite here; the PostgreSQL side (a cut line) is
``tests/reliability/test_database_outage.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import create_engine, text

from servicekit.db import database_unreachable


def _error(engine: sqlalchemy.Engine, sql: str) -> sqlalchemy.exc.DBAPIError:
    with pytest.raises(sqlalchemy.exc.DBAPIError) as info, engine.begin() as conn:
        conn.execute(text(sql))
    return info.value


def test_a_locked_sqlite_database_is_unreachable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    holder = create_engine(url)
    waiter = create_engine(url, connect_args={"timeout": 0})
    with holder.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    with holder.connect() as conn:
        conn.exec_driver_sql("BEGIN EXCLUSIVE")
        try:
            assert database_unreachable(_error(waiter, "INSERT INTO t VALUES (1)"))
        finally:
            conn.exec_driver_sql("ROLLBACK")


def test_a_wrong_statement_is_not(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    missing = _error(engine, "SELECT * FROM no_such_table")
    assert isinstance(missing, sqlalchemy.exc.OperationalError)  # SQLite's class for it
    assert not database_unreachable(missing)
    assert not database_unreachable(ValueError("not a database error"))


def test_a_refused_postgresql_connection_is_unreachable() -> None:
    from servicekit.testing import free_port

    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none",
                           connect_args={"connect_timeout": 2})
    assert database_unreachable(_error(engine, "SELECT 1"))
