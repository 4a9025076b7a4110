"""Replacing a court's seal takes If-Match (DESIGN, Conventions; ``servicekit.versions``): the
first registration needs none, a replace without it is 428 and changes nothing, a stale one
412; ``If-None-Match: *`` registers only if the court has no seal yet. On SQLite and
PostgreSQL.

Failed before: If-Match was optional, so an admin who never read the seal overwrote it, an
unreadable If-Match was taken as none, and If-None-Match was ignored.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from ecourt.contracts import OPENAPI
from servicekit.tables import audit_trail, outbox
from servicekit.testing import problem_of
from services.documents.tests.conftest import COURT, SEAL, Harness
from services.documents.tests.test_postgres import pg  # noqa: F401 - the PostgreSQL harness

OTHER_NAME = "广州市中级人民法院立案专用章"


@pytest.fixture(params=["harness", pytest.param("pg", marks=pytest.mark.real)])
def h(request: pytest.FixtureRequest) -> Harness:
    """The documents harness on SQLite, then on PostgreSQL."""
    harness: Harness = request.getfixturevalue(request.param)
    return harness


def _post(h: Harness, body: dict[str, str] | None = None, **headers: str) -> Any:
    return h.client.post("/seals", headers={**h.token("court_admin"), **headers},
                         json=body or SEAL)


def _everything(h: Harness) -> tuple[Any, ...]:
    """The seal as read back (status, body, ETag) and every outbox and audit trail row."""
    got = h.client.get(f"/seals/{COURT}", headers=h.token("specialist"))
    with h.rt.db.transaction() as session:
        events = session.scalar(select(func.count()).select_from(outbox))
        trail = session.scalar(select(func.count()).select_from(audit_trail))
    return got.status_code, got.get_json(), got.headers.get("ETag"), events, trail


def test_a_replace_without_if_match_is_428_and_changes_nothing(h: Harness) -> None:
    first = _post(h)
    assert first.status_code == 201 and first.headers["ETag"] == '"seal-1"'
    before = _everything(h)
    body = problem_of(_post(h, {**SEAL, "seal_name": OTHER_NAME}), 428, "precondition-required")
    assert "If-Match" in body["detail"] and "read the seal" in body["detail"]
    assert _everything(h) == before  # same version and name, nothing written
    replaced = _post(h, {**SEAL, "seal_name": OTHER_NAME}, **{"If-Match": before[2]})
    assert replaced.status_code == 200 and replaced.headers["ETag"] == '"seal-2"'
    problem_of(_post(h, **{"If-Match": before[2]}), 412, "precondition-failed")  # stale
    assert _everything(h)[1]["seal_name"] == OTHER_NAME


def test_the_admin_of_another_court_is_refused_before_any_precondition(h: Harness) -> None:
    """403 as before, with or without If-Match; the court's own admin is told 428."""
    assert _post(h).status_code == 201
    before = _everything(h)
    other = h.token("court_admin", court="粤02")
    for headers in ({}, {"If-Match": "*"}):
        resp = h.client.post("/seals", headers={**other, **headers}, json=SEAL)
        problem_of(resp, 403, "forbidden")
    problem_of(_post(h), 428, "precondition-required")
    assert _everything(h)[:4] == before[:4]


def test_star_matches_an_existing_seal_and_if_none_match_star_creates_only(h: Harness) -> None:
    problem_of(_post(h, **{"If-Match": "*"}), 412, "precondition-failed")  # nothing to match
    assert _everything(h)[0] == 404
    created = _post(h, **{"If-None-Match": "*"})
    assert created.status_code == 201, created.get_json()
    before = _everything(h)
    body = problem_of(_post(h, {**SEAL, "seal_name": OTHER_NAME}, **{"If-None-Match": "*"}),
                    412, "precondition-failed")
    assert "exists already" in body["detail"]
    assert _everything(h) == before
    star = _post(h, {**SEAL, "seal_name": OTHER_NAME}, **{"If-Match": "*"})
    assert star.status_code == 200 and star.get_json()["version"] == 2


def test_a_weak_tag_never_matches_and_an_unreadable_header_is_400(h: Harness) -> None:
    assert _post(h).status_code == 201
    before = _everything(h)
    weak = problem_of(_post(h, **{"If-Match": f"W/{before[2]}"}), 412, "precondition-failed")
    assert "weak" in weak["detail"]
    for garbage in (f"{before[2]} junk", ",,,", '"unterminated'):
        problem_of(_post(h, **{"If-Match": garbage}), 400, "invalid-if-match")
        problem_of(_post(h, **{"If-Match": garbage, "If-None-Match": "*"}), 400,
                 "invalid-if-match")
    assert _everything(h) == before


def test_the_contract_documents_the_preconditions() -> None:
    """contracts/openapi/documents.json: POST /seals offers If-Match (not required: the first
    seal needs none) and If-None-Match, and documents 428, 412 and 400 as problems."""
    spec = json.loads((OPENAPI / "documents.json").read_text(encoding="utf-8"))
    operation = spec["paths"]["/seals"]["post"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert params["If-Match"]["required"] is False and "428" in params["If-Match"]["description"]
    assert params["If-None-Match"]["in"] == "header"
    for status in ("428", "412", "400"):
        assert "application/problem+json" in operation["responses"][status]["content"], status
