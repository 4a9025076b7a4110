"""``servicekit.paging.page_of``: the total and one page of a query, in SQL, on SQLite and on
PostgreSQL — a join whose two tables both have an ``id`` column (as matters' to-do list joins
applications and cases) counts and pages the same on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask_smorest.pagination import PaginationParameters
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, insert, select

from servicekit.db import Database
from servicekit.paging import page_of
from servicekit.testing import pg_databases

META = MetaData()
OWNERS = Table("owners", META, Column("id", String(8), primary_key=True),
               Column("name", String(20)))
ITEMS = Table("items", META, Column("id", String(8), primary_key=True),
              Column("owner_id", String(8), ForeignKey("owners.id")),
              Column("rank", Integer))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.real)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'paging.db'}")
        yield from _filled(database)
        return
    with pg_databases(["paging"]) as urls:
        yield from _filled(Database(urls["paging"]))


def _filled(database: Database) -> Iterator[Database]:
    """23 items of owner ``a`` in three ranks (so many tie), 4 of owner ``b``."""
    META.create_all(database.engine)
    with database.transaction() as session:
        session.execute(insert(OWNERS), [{"id": "a", "name": "甲"}, {"id": "b", "name": "乙"}])
        session.execute(insert(ITEMS), [{"id": f"i{n:03d}", "owner_id": "a", "rank": n % 3}
                                        for n in range(23)])
        session.execute(insert(ITEMS), [{"id": f"j{n:03d}", "owner_id": "b", "rank": 0}
                                        for n in range(4)])
    try:
        yield database
    finally:
        database.dispose()


def _query():  # type: ignore[no-untyped-def]
    return (select(ITEMS, OWNERS).join(OWNERS, OWNERS.c.id == ITEMS.c.owner_id)
            .where(OWNERS.c.id == "a").order_by(ITEMS.c.rank, ITEMS.c.id))


def _page(db: Database, page: int, size: int) -> tuple[list[str], int | None]:
    params = PaginationParameters(page, size)
    with db.transaction() as session:
        ids = [row[0] for row in page_of(session, _query(), params)]
    return ids, params.item_count


def test_a_page_and_the_total_of_a_join(db: Database) -> None:
    ids, total = _page(db, 1, 10)
    assert total == 23
    assert ids == ["i000", "i003", "i006", "i009", "i012", "i015", "i018", "i021", "i001",
                   "i004"]


def test_the_pages_together_hold_every_row_once_in_order(db: Database) -> None:
    pages = [_page(db, n, 4)[0] for n in range(1, 8)]
    assert [len(p) for p in pages] == [4, 4, 4, 4, 4, 3, 0]
    everything = [i for p in pages for i in p]
    with db.transaction() as session:
        assert everything == [row[0] for row in session.execute(_query())]


def test_a_page_past_the_end_is_empty_and_still_counted(db: Database) -> None:
    assert _page(db, 9, 10) == ([], 23)
