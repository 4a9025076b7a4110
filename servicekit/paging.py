"""Paged lists: a list route answers one page of its rows, with flask-smorest's pagination.

``@paginated(blp)`` under ``@blp.response`` reads ``page`` and ``page_size`` from the query
(``page_size`` at most ``MAX_PAGE_SIZE``; more, or a page below 1, is a 422 problem) and sends
the ``X-Pagination`` header (total, total_pages, first/last/previous/next page), which the
OpenAPI documents. The view passes the ``pagination_parameters`` it is given to ``page_of``,
which counts the rows and reads only the page, in SQL and in the caller's transaction, so a
list never stops silently at a fixed number of rows and never loads them all.

A query paged here orders by a unique key last (the row's id): rows that tie on the visible
order (the same deadline, the same second) would otherwise come in any order the database
likes from one page to the next, so a page boundary could repeat one row and skip another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_smorest import Blueprint
from flask_smorest.pagination import PaginationParameters
from sqlalchemy import Select, func, select
from sqlalchemy.engine import Result
from sqlalchemy.orm import Session

#: rows a page holds when the client names no ``page_size`` (flask-smorest's own default; the
#: seeds' screenshots show lists of fewer rows and no page size)
PAGE_SIZE = 10
#: the largest ``page_size`` a client may ask for
MAX_PAGE_SIZE = 100


def paginated(blp: Blueprint) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``blp.paginate`` with the suite's page sizes; the view receives
    ``pagination_parameters`` and must hand them to ``page_of``."""
    return blp.paginate(page_size=PAGE_SIZE, max_page_size=MAX_PAGE_SIZE)


def page_of(session: Session, query: Select[Any],
            params: PaginationParameters) -> Result[Any]:
    """The page of ``query`` that ``params`` asks for (LIMIT/OFFSET), having counted all of
    its rows into ``params.item_count`` for the ``X-Pagination`` header. A page past the end
    is empty; its header still gives the total and the last page."""
    params.item_count = count_of(session, query)
    if params.first_item >= params.item_count:
        # past the end: nothing to read, and no OFFSET the database cannot hold (a page number
        # of twenty digits overflows a bigint: a 500 instead of an empty page)
        return session.execute(query.limit(0))
    return session.execute(query.limit(params.page_size).offset(params.first_item))


def count_of(session: Session, query: Select[Any]) -> int:
    """How many rows ``query`` gives (COUNT over it, its ORDER BY dropped)."""
    return session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
