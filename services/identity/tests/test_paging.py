"""identity's lists come a page at a time, as matters' and delivery's do (flask-smorest's
pagination: ``page``, ``page_size`` up to 100, the ``X-Pagination`` header), each counted and
read in SQL under its access rule: an individual's own organizations and lawyer verifications,
a reviewer's own court's registrations and offline verifications. They answered every row at
once and said nothing of how many there were."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ecourt.contracts import OPENAPI
from services.identity import organizations_domain as rules
from services.identity.models_orgs import LawyerVerification
from services.identity.tests.conftest import Identity
from services.identity.tests.test_organizations import register_org

LISTS = ("/organizations/mine", "/organizations/reviews", "/lawyer-verifications/mine",
         "/lawyer-verifications/reviews")
T0 = datetime(2026, 3, 2, 1, tzinfo=UTC)


@pytest.fixture
def people(identity: Identity) -> dict[str, Any]:
    """Two individuals and the administrators (reviewers) of 粤01 and 粤02."""
    found: dict[str, Any] = {}
    for court in ("粤01", "粤02"):
        found[court] = identity.admin(court)[1]["access_token"]
    for who in ("a", "b"):
        person, account = identity.register()
        found[who] = {"id": account["id"],
                      "token": identity.tokens(person["phone"])["access_token"]}
    return found


def _page(identity: Identity, url: str, token: str,
          **query: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    resp = identity.call("GET", url, token=token, query_string=query)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["items"], json.loads(resp.headers["X-Pagination"])


def _all(identity: Identity, url: str, token: str, **query: Any) -> list[str]:
    """Every row's id, five a page, following ``next_page`` to the end."""
    ids: list[str] = []
    page: int | None = 1
    while page is not None:
        items, meta = _page(identity, url, token, page=page, page_size=5, **query)
        assert len(items) <= 5
        ids += [item["id"] for item in items]
        page = meta.get("next_page")
    return ids


def _orgs(identity: Identity, token: str, count: int, court: str) -> list[str]:
    """``count`` registrations to ``court``, each with its own well-formed USCC."""
    ids = []
    for _ in range(count):
        base = f"913501{uuid.uuid4().int % 10**11:011d}"
        resp = register_org(identity, token, uscc=base + rules.uscc_check_char(base),
                            court=court)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        ids.append(resp.get_json()["id"])
    return ids


def _verifications(identity: Identity, account_id: str, count: int, court: str | None,
                   status: str = rules.REJECTED, start: datetime = T0) -> list[str]:
    """``count`` verification applications of the account a minute apart from ``start``
    (offline to ``court``, or online when it is None), as a lawyer who applied again after
    each refusal leaves them."""
    ids = []
    with identity.rt.db.transaction() as session:
        for n in range(count):
            row = LawyerVerification(
                id=str(uuid.uuid4()), account_id=account_id,
                method=rules.OFFLINE if court else rules.ONLINE,
                license_no="14401202110000099", law_firm="广州某律师事务所", court=court,
                status=status, submitted_at=start + timedelta(minutes=n))
            session.add(row)
            ids.append(row.id)
    return ids


def test_my_organizations_and_a_court_s_registrations_are_paged(
        identity: Identity, people: dict[str, Any]) -> None:
    """Failed before: every row in one answer, no X-Pagination."""
    ours = _orgs(identity, people["a"]["token"], 12, "粤01")
    theirs = _orgs(identity, people["b"]["token"], 3, "粤02")
    first, meta = _page(identity, "/organizations/mine", people["a"]["token"])
    assert [o["id"] for o in first] == ours[::-1][:10]  # newest first, 10 by default
    assert meta == {"total": 12, "total_pages": 2, "first_page": 1, "last_page": 2, "page": 1,
                    "next_page": 2}
    last, meta = _page(identity, "/organizations/mine", people["a"]["token"], page=2)
    assert ([o["id"] for o in last], meta["previous_page"]) == (ours[::-1][10:], 1)
    assert _all(identity, "/organizations/mine", people["b"]["token"]) == theirs[::-1]
    # a court's reviewers: their court's registrations only, the soonest deadline first
    assert _all(identity, "/organizations/reviews", people["粤01"]) == ours
    _, meta = _page(identity, "/organizations/reviews", people["粤02"])
    assert meta["total"] == 3
    beyond, meta = _page(identity, "/organizations/reviews", people["粤02"], page=2)
    assert (beyond, meta["total"], meta["last_page"]) == ([], 3, 1)
    _, meta = _page(identity, "/organizations/reviews", people["粤01"], status="approved")
    assert meta["total"] == 0


def test_lawyer_verifications_are_paged_for_the_applicant_and_the_court(
        identity: Identity, people: dict[str, Any]) -> None:
    a, b = people["a"], people["b"]
    refused = _verifications(identity, a["id"], 12, "粤01")
    online = _verifications(identity, a["id"], 1, None, status=rules.VERIFIED,
                            start=T0 + timedelta(hours=1))
    elsewhere = _verifications(identity, b["id"], 2, "粤02")
    mine, meta = _page(identity, "/lawyer-verifications/mine", a["token"])
    assert [v["id"] for v in mine] == (refused + online)[::-1][:10]  # newest first
    assert (meta["total"], meta["last_page"]) == (13, 2)
    assert _all(identity, "/lawyer-verifications/mine", a["token"]) == (refused + online)[::-1]
    assert _all(identity, "/lawyer-verifications/mine", b["token"]) == elsewhere[::-1]
    # offline ones to the reviewer's court only, oldest first; the online one to no court
    reviews = _all(identity, "/lawyer-verifications/reviews", people["粤01"], status="rejected")
    assert reviews == refused
    last, meta = _page(identity, "/lawyer-verifications/reviews", people["粤01"],
                       status="rejected", page=3, page_size=5)
    assert ([v["id"] for v in last], meta["total"]) == (refused[10:], 12)
    assert {v["name"] for v in last} == {"张三"}
    _, meta = _page(identity, "/lawyer-verifications/reviews", people["粤02"], status="rejected")
    assert meta["total"] == 2


@pytest.mark.parametrize("query", [{"page_size": 101}, {"page": 0}])
@pytest.mark.parametrize("url", LISTS)
def test_a_page_out_of_bounds_is_a_422_problem(identity: Identity, people: dict[str, Any],
                                                url: str, query: dict[str, Any]) -> None:
    token = people["粤01"] if url.endswith("/reviews") else people["a"]["token"]
    resp = identity.call("GET", url, token=token, query_string=query)
    assert resp.status_code == 422
    assert resp.content_type == "application/problem+json"
    assert set(resp.get_json()["errors"]["query"]) == set(query)


def test_the_contract_documents_the_paging_of_every_list() -> None:
    spec = json.loads((OPENAPI / "identity.json").read_text(encoding="utf-8"))
    for url in LISTS:
        operation = spec["paths"][url]["get"]
        params = {p["name"]: p["schema"] for p in operation["parameters"]
                  if p["in"] == "query"}
        assert (params["page_size"]["default"], params["page_size"]["maximum"]) == (10, 100)
        assert "page" in params, url
        assert "X-Pagination" in operation["responses"]["200"]["headers"], url
