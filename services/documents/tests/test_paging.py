"""The documents of an application come a page at a time (flask-smorest's pagination:
``page``, ``page_size`` up to 100, the ``X-Pagination`` header), counted and read in SQL for
the caller's court only; the list answered every document at once (each reissue leaves a
revoked one behind) and said nothing of how many there were."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ecourt.contracts import OPENAPI
from services.documents.models import REVOKED, VALID, Document
from services.documents.tests.conftest import COURT, COURT_NAME, Harness

APPLICATION = str(uuid.uuid4())
OTHER_COURT = "粤02"
T0 = datetime(2026, 4, 1, 2, tzinfo=UTC)


def _documents(h: Harness, count: int, court: str = COURT, application_id: str = APPLICATION,
               at: datetime | None = None) -> list[str]:
    """``count`` documents of the application a minute apart (the last one valid, the rest
    revoked by reissues), or all at ``at`` when it is given, so they tie: their ids."""
    ids = []
    with h.rt.db.transaction() as session:
        for n in range(count):
            doc = Document(id=str(uuid.uuid4()), application_id=application_id,
                           request_id=str(uuid.uuid4()), court=court, court_name=COURT_NAME,
                           kind="effectiveness_certificate", case_number="(2026)粤01民初1号",
                           service_number="(2026)粤01文书第1号",
                           code=uuid.uuid4().hex[:20], sha256="0" * 64, size=1,
                           issued_at=at or T0 + timedelta(minutes=n),
                           status=VALID if n == count - 1 else REVOKED,
                           published=False, viewer_account_ids="[]")
            session.add(doc)
            ids.append(doc.id)
    return ids


def _page(h: Harness, headers: dict[str, str],
          **query: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    resp = h.client.get("/documents", headers=headers,
                        query_string={"application_id": APPLICATION, **query})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["items"], json.loads(resp.headers["X-Pagination"])


def test_an_application_s_documents_come_a_page_at_a_time(harness: Harness) -> None:
    """Failed before: all 23 in one answer, no X-Pagination."""
    h = harness
    made = _documents(h, 23)
    _documents(h, 4, application_id=str(uuid.uuid4()))  # another application's
    staff = h.token("clerk")
    first, meta = _page(h, staff)
    assert [d["id"] for d in first] == made[::-1][:10]  # newest first, 10 by default
    assert first[0]["status"] == VALID
    assert meta == {"total": 23, "total_pages": 3, "first_page": 1, "last_page": 3, "page": 1,
                    "next_page": 2}
    last, meta = _page(h, staff, page=3)
    assert [d["id"] for d in last] == made[::-1][20:]
    assert (meta["page"], meta["previous_page"], "next_page" in meta) == (3, 2, False)
    beyond, meta = _page(h, staff, page=4)
    assert (beyond, meta["total"], meta["last_page"]) == ([], 23, 3)
    everything, _ = _page(h, staff, page_size=100)
    assert [d["id"] for d in everything] == made[::-1]


def test_documents_of_the_same_instant_never_repeat_or_vanish_across_pages(
        harness: Harness) -> None:
    tied = _documents(harness, 12, at=T0)
    pages = [_page(harness, harness.token("clerk"), page=n, page_size=5)[0] for n in (1, 2, 3)]
    assert [d["id"] for page in pages for d in page] == sorted(tied, reverse=True)


def test_each_court_s_staff_page_through_their_own_court_s_documents_only(
        harness: Harness) -> None:
    h = harness
    ours = _documents(h, 12)
    elsewhere = str(uuid.uuid4())
    theirs = _documents(h, 3, court=OTHER_COURT, application_id=elsewhere)
    seen: list[str] = []
    page: int | None = 1
    while page is not None:
        items, meta = _page(h, h.token("specialist"), page=page, page_size=5)
        assert meta["total"] == 12
        seen += [d["id"] for d in items]
        page = meta.get("next_page")
    assert seen == ours[::-1]
    other_staff = h.token("specialist", court=OTHER_COURT)
    items, meta = _page(h, other_staff, page_size=2, page=2, application_id=elsewhere)
    assert ([d["id"] for d in items], meta["total"]) == (theirs[::-1][2:], 3)
    for headers, application_id in ((other_staff, APPLICATION),
                                    (h.token("specialist"), elsewhere)):
        items, meta = _page(h, headers, application_id=application_id)
        assert (items, meta["total"]) == ([], 0)
    refused = h.client.get("/documents", headers=h.token("party", court=None),
                           query_string={"application_id": APPLICATION, "page": 2})
    assert refused.status_code == 403


def test_a_page_far_past_the_end_is_empty_not_a_server_error(harness: Harness) -> None:
    """A page number no database OFFSET holds (schemathesis sends them): the empty page past
    the end, its header still counting. Failed before: a 500."""
    _documents(harness, 3)
    items, meta = _page(harness, harness.token("clerk"), page=2**64)
    assert (items, meta["total"], meta["last_page"]) == ([], 3, 1)


@pytest.mark.parametrize("query", [{"page_size": 101}, {"page_size": 0}, {"page": 0}])
def test_a_page_out_of_bounds_is_a_422_problem(harness: Harness, query: dict[str, Any]) -> None:
    resp = harness.client.get("/documents", headers=harness.token("clerk"),
                              query_string={"application_id": APPLICATION, **query})
    assert resp.status_code == 422
    assert resp.content_type == "application/problem+json"
    assert set(resp.get_json()["errors"]["query"]) == set(query)


def test_the_contract_documents_the_paging() -> None:
    spec = json.loads((OPENAPI / "documents.json").read_text(encoding="utf-8"))
    operation = spec["paths"]["/documents"]["get"]
    params = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}
    assert (params["page_size"]["default"], params["page_size"]["maximum"]) == (10, 100)
    assert {"page", "application_id"} <= set(params)
    assert "X-Pagination" in operation["responses"]["200"]["headers"]
