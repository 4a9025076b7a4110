"""Every list of matters comes a page at a time (flask-smorest's pagination: ``page``,
``page_size`` up to 100, the ``X-Pagination`` header), counted and read in SQL under the same
access rules as before; the lists stopped silently at 500 cases, 1000 applications or binding
requests and 50 lawyers, and told the client nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from ecourt.contracts import OPENAPI
from services.matters.models import Application, Case
from services.matters.tests.conftest import APPLY, Harness

PAGED = ("/cases", "/cases/{case_id}/applications", "/todo", "/bindings", "/lawyers")


def _page(h: Harness, url: str, headers: dict[str, str],
          **query: Any) -> tuple[Any, dict[str, Any]]:
    resp = h.client.get(url, headers=headers, query_string=query)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json(), json.loads(resp.headers["X-Pagination"])


def _all_pages(h: Harness, url: str, headers: dict[str, str], size: int,
               key: str | None = None) -> list[Any]:
    """Every row, page after page, following ``next_page`` until there is none."""
    rows: list[Any] = []
    page: int | None = 1
    while page is not None:
        body, meta = _page(h, url, headers, page=page, page_size=size)
        items = body[key] if key else body
        assert len(items) <= size
        rows += items
        page = meta.get("next_page")
    return rows


def _in_order(h: Harness, ids: list[str], by: str) -> list[str]:
    """``ids`` as a list ordered by ``by`` (``submitted_at``: oldest first; ``deadline``:
    nearest first) shows them: by that time, then by id. Times with legal weight are kept to
    the second (DESIGN), so applications made in one second tie and the id decides."""
    with h.rt.db.transaction() as session:
        rows = session.execute(select(Application.id, getattr(Application, by))
                               .where(Application.id.in_(ids))).all()
    return [row.id for row in sorted(rows, key=lambda row: (row[1], row.id))]


def test_the_case_list_comes_a_page_at_a_time(harness: Harness) -> None:
    """Failed before: every case in one list (up to 500), no X-Pagination."""
    h = harness
    made = [h.case()["id"] for _ in range(23)]
    staff = h.token("specialist")
    first, meta = _page(h, "/cases", staff)
    assert len(first) == 10  # page_size by default
    assert meta == {"total": 23, "total_pages": 3, "first_page": 1, "last_page": 3, "page": 1,
                    "next_page": 2}
    last, meta = _page(h, "/cases", staff, page=3)
    assert len(last) == 3
    assert meta == {"total": 23, "total_pages": 3, "first_page": 1, "last_page": 3, "page": 3,
                    "previous_page": 2}
    assert [c["id"] for c in first] == made[::-1][:10]  # newest first
    # past the end: an empty page; the header still gives the total and the last page
    beyond, meta = _page(h, "/cases", staff, page=4)
    assert beyond == []
    assert meta == {"total": 23, "total_pages": 3, "first_page": 1, "last_page": 3}
    assert sorted(c["id"] for c in _all_pages(h, "/cases", staff, 7)) == sorted(made)


def test_rows_that_tie_are_ordered_by_id_so_pages_never_repeat_or_skip(harness: Harness) -> None:
    """Cases created in the same instant: the id decides, page after page — newest first, as
    the list is, since ids sort by creation (``servicekit.ids``). Failed before (no
    tie-breaker: the rows came in the order they were stored)."""
    h = harness
    made = [h.case()["id"] for _ in range(12)]
    with h.rt.db.transaction() as session:
        for case in session.scalars(select(Case)):
            case.created_at = datetime(2026, 1, 5, 8, tzinfo=UTC)
    seen = [c["id"] for c in _all_pages(h, "/cases", h.token("specialist"), 5)]
    assert seen == sorted(made, reverse=True) == made[::-1]


def test_a_party_pages_through_their_own_cases_only(harness: Harness) -> None:
    h = harness
    mine = [h.case()["id"] for _ in range(12)]
    for _ in range(5):
        h.case(plaintiff=h.ids["stranger"])
    _, meta = _page(h, "/cases", h.party(), page_size=5)
    assert (meta["total"], meta["total_pages"]) == (12, 3)
    assert sorted(c["id"] for c in _all_pages(h, "/cases", h.party(), 5)) == sorted(mine)
    _, meta = _page(h, "/cases", h.party("stranger"))
    assert meta["total"] == 5


def _bound_lawyer(h: Harness, case: dict[str, Any]) -> None:
    """The harness's lawyer, bound to the defendant (黄添强) and approved by the judge."""
    binding = h.ask(case["case_number"]).get_json()
    assert h.client.post(f"/bindings/{binding['id']}/approve", headers={
        **h.staff("judge"), **h.if_match(f"/bindings/{binding['id']}")}).status_code == 200


def test_a_case_s_applications_are_paged_under_the_access_rule(harness: Harness) -> None:
    """The plaintiff sees and counts their own applications, the defendant's lawyer theirs,
    staff all, on every page; a row from before 0003 (no party_id) is the applicant's."""
    h = harness
    case = h.case()
    _bound_lawyer(h, case)
    url = f"/cases/{case['id']}/applications"
    own = [h.client.post(url, headers=h.party(), json=APPLY).get_json()["id"]
           for _ in range(12)]
    theirs = [h.client.post(url, headers=h.lawyer(), json=APPLY).get_json()["id"]
              for _ in range(3)]
    with h.rt.db.transaction() as session:
        session.get(Application, own[0]).party_id = None  # type: ignore[union-attr]
    for who, headers, expected in (("plaintiff", h.party(), own),
                                   ("lawyer", h.lawyer(), theirs),
                                   ("staff", h.token("specialist"), own + theirs)):
        first, meta = _page(h, url, headers)
        assert meta["total"] == len(expected), who
        assert len(first) == min(10, len(expected)), who
        assert [a["id"] for a in _all_pages(h, url, headers, 4)] == _in_order(
            h, expected, "submitted_at"), who  # oldest first


def test_the_todo_list_is_paged(harness: Harness) -> None:
    """``total`` counts every row the filters match (it was the length of the list). Its
    export gives every row: test_todo_export.py."""
    h = harness
    case = h.case()
    made = [h.client.post(f"/cases/{case['id']}/applications", headers=h.party(),
                          json=APPLY).get_json()["id"] for _ in range(12)]
    staff = h.token("specialist")
    body, meta = _page(h, "/todo", staff, page_size=5, page=2)
    assert body["total"] == meta["total"] == 12
    assert [r["application_id"] for r in body["items"]] == _in_order(
        h, made, "deadline")[5:10]  # nearest deadline first
    assert (meta["page"], meta["previous_page"], meta["next_page"]) == (2, 1, 3)
    filtered, meta = _page(h, "/todo", staff, status="completed")
    assert (filtered["total"], filtered["items"], meta["total_pages"]) == (0, [], 0)


def test_binding_requests_are_paged_and_a_lawyer_counts_only_their_own(harness: Harness) -> None:
    h = harness
    for _ in range(12):
        assert h.ask(h.case()["case_number"]).status_code == 201
    other = h.verify_lawyer(name="张律师")
    assert h.ask(h.case()["case_number"], headers=h.lawyer(other)).status_code == 201
    body, meta = _page(h, "/bindings", h.lawyer(), page_size=5)
    assert (len(body["items"]), body["total"], meta["total"], meta["last_page"]) == (5, 12, 12, 3)
    assert len(_all_pages(h, "/bindings", h.lawyer(), 5, key="items")) == 12
    assert _page(h, "/bindings", h.lawyer(other))[0]["total"] == 1
    body, meta = _page(h, "/bindings", h.staff("clerk"))
    assert (len(body["items"]), body["total"], meta["next_page"]) == (10, 13, 2)


def test_the_lawyer_list_is_paged(harness: Harness) -> None:
    """Failed before: a search stopped at 50 lawyers and said nothing."""
    h = harness
    for n in range(55):
        h.verify_lawyer(name=f"王律师{n:02d}", law_firm="广东天河律师事务所")
    body, meta = _page(h, "/lawyers", h.staff("clerk"), q="天河", page=6)
    assert (len(body["items"]), body["total"], meta["total"]) == (5, 55, 55)
    assert [x["name"] for x in body["items"]] == [f"王律师{n:02d}" for n in range(50, 55)]


@pytest.mark.parametrize("query", [{"page_size": 101}, {"page_size": 0}, {"page": 0},
                                   {"page": "x"}])
@pytest.mark.parametrize("path", PAGED)
def test_a_page_out_of_bounds_is_a_422_problem(harness: Harness, path: str,
                                                query: dict[str, Any]) -> None:
    h = harness
    url = path.format(case_id=h.case()["id"])
    resp = h.client.get(url, headers=h.staff("clerk"), query_string=query)
    assert resp.status_code == 422, resp.get_json()
    assert resp.content_type == "application/problem+json"
    problem = resp.get_json()
    assert problem["type"].endswith("/validation-error")
    assert set(problem["errors"]["query"]) == set(query)


def test_the_contract_documents_the_paging_of_every_list() -> None:
    spec = json.loads((OPENAPI / "matters.json").read_text(encoding="utf-8"))
    for path in PAGED:
        operation = spec["paths"][path]["get"]
        sizes = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}
        assert (sizes["page_size"]["default"], sizes["page_size"]["maximum"]) == (10, 100), path
        assert "page" in sizes, path
        assert "X-Pagination" in operation["responses"]["200"]["headers"], path
    pagination = spec["components"]["headers"]["PAGINATION"]["content"]["application/json"]
    header = pagination["schema"]["$ref"].rsplit("/", 1)[1]
    assert {"total", "total_pages", "next_page"} <= set(
        spec["components"]["schemas"][header]["properties"])
