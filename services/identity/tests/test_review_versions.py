"""The reviews of an organization's registration and of a lawyer's offline verification take
If-Match (DESIGN, Conventions: "a stale write gets 412 — two clerks saving the same application
never lose an update"), through the shared ``servicekit.versions`` helper as matters does.

Each record carries a version (1 when submitted, +1 on each change) that single-record reads
answer as ``ETag: "<version>"`` and the review lists carry as ``version``. Approve and reject:
without If-Match 428 and nothing changes (status, version, no event, no audit 'changed' entry);
stale 412; ``*`` any version; ``W/`` never matches; unreadable 400; the ETag as read goes through
and the answer carries the next one. All decided after the existing authorisation: a party still
gets 403, a reviewer of another court still 404, with or without If-Match.

Failed before: no version and no ETag at all, so a second reviewer's approve or reject applied
(or got the 409 of a decided record) whatever they had read; there was no GET of one lawyer
verification.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from ecourt import registry
from ecourt.contracts import OPENAPI
from servicekit import migrations
from servicekit.tables import audit_trail, outbox
from servicekit.testing import problem_of
from services.identity.tests.conftest import PASSWORD, Identity
from tests.factories import uscc

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@dataclass
class Court:
    """粤01's reviewer and administrator, a reviewer-administrator of 粤02, and a party."""

    identity: Identity
    reviewer: str
    admin: str
    outsider: str
    party: str

    def person(self) -> str:
        """A fresh signed-in individual's token (one pending verification each)."""
        someone, _ = self.identity.register()
        return str(self.identity.tokens(someone["phone"])["access_token"])


@pytest.fixture
def court(identity: Identity) -> Court:
    _, admin = identity.admin("粤01")
    reviewer = identity.add_staff(admin["access_token"], roles=["registry_reviewer"])
    _, other_admin = identity.admin("粤02")
    outsider = identity.add_staff(other_admin["access_token"],
                                  roles=["registry_reviewer", "court_admin"])
    c = Court(identity, identity.tokens(reviewer["phone"])["access_token"],
              admin["access_token"], identity.tokens(outsider["phone"])["access_token"], "")
    c.party = c.person()
    return c


def _organization(c: Court, owner: str | None = None) -> str:
    resp = c.identity.call("POST", "/organizations", token=owner or c.person(), data={
        "name": "广州示例科技有限公司", "uscc": uscc(), "legal_representative": "王五",
        "court": "粤01", "password": PASSWORD,
        "licence": (io.BytesIO(PNG), "licence.png", "image/png")},
        content_type="multipart/form-data")
    assert resp.status_code == 201, resp.get_json()
    return f"/organizations/{resp.get_json()['id']}"


def _verification(c: Court, owner: str | None = None) -> str:
    resp = c.identity.call("POST", "/lawyer-verifications", token=owner or c.person(), data={
        "method": "offline", "court": "粤01", "license_no": "14401202110000099",
        "law_firm": "广州某律师事务所", "certificate": (io.BytesIO(PNG), "c.png", "image/png"),
        "id_card": (io.BytesIO(PNG), "i.png", "image/png")}, content_type="multipart/form-data")
    assert resp.status_code == 201, resp.get_json()
    return f"/lawyer-verifications/{resp.get_json()['id']}"


@dataclass(frozen=True)
class Route:
    """A review route: how to make a record it applies to, with what body, what it emits and
    the status it leaves."""

    make: Callable[[Court], str]
    action: str
    body: dict[str, Any] | None
    emits: str
    status: str

    def post(self, c: Court, path: str, token: str | None = None, **headers: str) -> Any:
        kwargs = {} if self.body is None else {"json": self.body}
        return c.identity.call("POST", f"{path}/{self.action}", token=token or c.reviewer,
                               headers=headers, **kwargs)


REASON = {"reason": "营业执照扫描件不清晰"}
ROUTES = {
    "organization approve": Route(_organization, "approve", None,
                                  "identity.organization.approved", "approved"),
    "organization reject": Route(_organization, "reject", REASON,
                                 "identity.organization.rejected", "rejected"),
    "verification approve": Route(_verification, "approve", None,
                                  "identity.lawyer.verified", "verified"),
    "verification reject": Route(_verification, "reject", REASON,
                                 "identity.lawyer.rejected", "rejected"),
}
RESOURCE = {"organization": _organization, "verification": _verification}


def _read(c: Court, path: str, token: str | None = None) -> tuple[dict[str, Any], str]:
    resp = c.identity.call("GET", path, token=token or c.reviewer)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json(), resp.headers["ETag"]


def _state(c: Court, path: str) -> tuple[Any, ...]:
    """The record's status and version as read back, its ETag, the events in the outbox and
    the audit trail's 'changed' entries."""
    body, etag = _read(c, path)
    with c.identity.rt.db.transaction() as session:
        events = session.scalars(select(outbox.c.type).order_by(outbox.c.id)).all()
        changed = session.scalar(select(func.count()).select_from(audit_trail)
                                 .where(audit_trail.c.action.like("%changed%")))
    return body["status"], body["version"], etag, events, changed


@pytest.mark.parametrize("what", sorted(RESOURCE))
def test_a_single_record_and_the_review_list_carry_the_version(court: Court,
                                                              what: str) -> None:
    """The applicant and the court's reviewers read ``ETag: "1"`` and ``version`` 1 on a new
    record; the review list shows the same version, so a reviewer can send it."""
    owner = court.person()
    path = RESOURCE[what](court, owner)
    for reader in (court.reviewer, court.admin, owner):
        body, etag = _read(court, path, reader)
        assert (body["version"], etag) == (1, '"1"')
    base = path.rsplit("/", 1)[0]
    items = court.identity.call("GET", f"{base}/reviews?status=pending",
                                token=court.reviewer).get_json()["items"]
    [item] = [i for i in items if path.endswith(i["id"])]
    assert item["version"] == 1


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_without_if_match_428_and_nothing_changes(court: Court, name: str) -> None:
    route = ROUTES[name]
    path = route.make(court)
    before = _state(court, path)
    assert before[:2] == ("pending", 1)
    body = problem_of(route.post(court, path), 428, "precondition-required")
    assert "If-Match" in body["detail"] and "read" in body["detail"]
    assert _state(court, path) == before  # status, version, no event, no 'changed' entry
    problem_of(route.post(court, path, **{"If-Match": "  "}), 428, "precondition-required")
    assert _state(court, path) == before


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_stale_412_the_etag_as_read_goes_through(court: Court, name: str) -> None:
    route = ROUTES[name]
    path = route.make(court)
    before = _state(court, path)
    problem_of(route.post(court, path, **{"If-Match": '"0"'}), 412, "precondition-failed")
    assert _state(court, path) == before
    done = route.post(court, path, **{"If-Match": before[2]})
    assert done.status_code == 200, done.get_json()
    assert done.headers["ETag"] == '"2"'
    assert (done.get_json()["status"], done.get_json()["version"]) == (route.status, 2)
    status, version, etag, events, _ = _state(court, path)
    assert (status, version, etag) == (route.status, 2, '"2"')
    assert events == [*before[3], route.emits]


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_star_a_weak_tag_and_garbage(court: Court, name: str) -> None:
    """``*`` matches; ``W/"1"`` does not (strong comparison); a header with no readable tag
    is a 400 — never a 500, and nothing changes."""
    route = ROUTES[name]
    path = route.make(court)
    before = _state(court, path)
    weak = problem_of(route.post(court, path, **{"If-Match": 'W/"1"'}), 412,
                      "precondition-failed")
    assert "weak" in weak["detail"]
    for garbage in ('"1" junk', ",,,", 'W/"unterminated'):
        problem_of(route.post(court, path, **{"If-Match": garbage}), 400, "invalid-if-match")
    assert _state(court, path) == before
    assert route.post(court, path, **{"If-Match": "*"}).status_code == 200


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_a_stranger_is_refused_as_before_not_told_428(court: Court, name: str) -> None:
    """Decided after authorisation: a reviewer of another court gets the 404 of a missing
    record and a party the 403 of a non-reviewer, with or without If-Match (even the right
    one), and nothing changes."""
    route = ROUTES[name]
    path = route.make(court)
    before = _state(court, path)
    for headers in ({}, {"If-Match": "*"}, {"If-Match": before[2]}):
        problem_of(route.post(court, path, court.outsider, **headers), 404, "not-found")
        problem_of(route.post(court, path, court.party, **headers), 403, "forbidden")
    assert _state(court, path)[:4] == before[:4]


@pytest.mark.parametrize("what", sorted(RESOURCE))
def test_two_reviewers_the_second_is_told_412(court: Court, what: str) -> None:
    """The reviewer and the administrator both read the pending record; the reviewer approves;
    the administrator's reject with the ETag they read is 412, not applied (nor the 409 of a
    decided record, which would tell them less)."""
    path = RESOURCE[what](court)
    _, mine = _read(court, path)
    _, theirs = _read(court, path, court.admin)
    approved = ROUTES[f"{what} approve"].post(court, path, **{"If-Match": mine})
    assert approved.status_code == 200, approved.get_json()
    rejected = ROUTES[f"{what} reject"].post(court, path, court.admin, **{"If-Match": theirs})
    problem_of(rejected, 412, "precondition-failed")
    status, version, _, events, _ = _state(court, path)
    assert (status, version) == (ROUTES[f"{what} approve"].status, 2)
    assert ROUTES[f"{what} reject"].emits not in events


def test_the_contract_requires_if_match_and_names_412_and_428() -> None:
    """contracts/openapi/identity.json: each review route takes a required If-Match header and
    documents the 428, 412 and 400 problems; one verification can be read."""
    spec = json.loads((OPENAPI / "identity.json").read_text(encoding="utf-8"))
    for path in [f"/organizations/{{org_id}}/{a}" for a in ("approve", "reject")] + [
            f"/lawyer-verifications/{{verification_id}}/{a}" for a in ("approve", "reject")]:
        operation = spec["paths"][path]["post"]
        [param] = [p for p in operation["parameters"] if p["name"] == "If-Match"]
        assert (param["in"], param["required"]) == ("header", True), path
        for status in ("428", "412", "400"):
            content = operation["responses"][status]["content"]
            assert "application/problem+json" in content, (path, status)
    assert "get" in spec["paths"]["/lawyer-verifications/{verification_id}"]
    for schema in ("Organization", "Verification"):
        assert "version" in spec["components"]["schemas"][schema]["properties"], schema


def test_the_migration_gives_existing_records_version_1(tmp_path: Path) -> None:
    """Rows made before migration 0009 get version 1, the ETag their reviewers read next
    (SQLite, foreign keys not enforced: the rows stand alone)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    where = registry.get("identity").migrations
    migrations.upgrade(where, url, "0008")
    engine = create_engine(url)
    now = "2026-12-01 08:00:00"
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO organizations (id, uscc, uscc_check_failed, name, legal_representative,"
            " court, applicant_account_id, licence_sha256, licence_content_type,"
            " licence_filename, licence_size, status, submitted_at, review_deadline) VALUES"
            " ('o', '91350100M000100Y43', 0, 'n', 'r', '粤01', 'a', 's', 'image/png', 'l.png',"
            " 1, 'pending', :now, :now)"), {"now": now})
        conn.execute(text(
            "INSERT INTO lawyer_verifications (id, account_id, method, license_no, law_firm,"
            " court, status, submitted_at) VALUES ('v', 'a', 'offline', '14401202110000099',"
            " 'f', '粤01', 'pending', :now)"), {"now": now})
    migrations.upgrade(where, url)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT version FROM organizations")).scalars().all() == [1]
        assert conn.execute(text("SELECT version FROM lawyer_verifications")
                            ).scalars().all() == [1]
    engine.dispose()
