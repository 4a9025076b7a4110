"""Every update of an application or a binding request takes If-Match (DESIGN, Conventions):
without it 428 precondition-required and nothing changes, stale 412, the ETag as read goes
through; ``*`` matches whatever version exists, a weak ``W/`` tag never matches (strong
comparison), an unreadable header is a 400. All decided after the caller was authorised.

Failed before: If-Match was optional, so a second clerk who never read the latest version
overwrote it (a review, a publish, a decision on a binding went through without it); ``*``
and lists were a 400 and ``W/"3"`` matched ``"3"``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from ecourt.contracts import OPENAPI
from servicekit.tables import audit_trail, outbox
from servicekit.testing import problem_of
from services.matters.tests.conftest import OTHER_COURT, Harness
from services.matters.tests.test_judge_decision import DECISION
from services.matters.tests.test_publishers import _failed, _issued


@pytest.fixture
def h(on_db: Harness) -> Harness:
    """The harness on SQLite, and on PostgreSQL (where the row lock makes the check hold)."""
    return on_db


def _submitted(h: Harness) -> str:
    case = h.case()
    resp = h.client.post(f"/cases/{case['id']}/applications", headers=h.party(), json={
        "kind": "effectiveness_certificate", "reason": "办理强制执行", "use": "向执行法院提交"})
    assert resp.status_code == 201, resp.get_json()
    return f"/applications/{resp.get_json()['id']}"


def _binding(h: Harness) -> str:
    resp = h.ask(h.case()["case_number"])
    assert resp.status_code == 201, resp.get_json()
    return f"/bindings/{resp.get_json()['id']}"


@dataclass(frozen=True)
class Route:
    """An update route: how to make a resource it applies to, who may call it, with what."""

    make: Callable[[Harness], str]
    action: str
    caller: Callable[[Harness], dict[str, str]]
    body: dict[str, Any] | None
    emits: str

    def post(self, h: Harness, path: str, **headers: str) -> Any:
        kwargs = {} if self.body is None else {"json": self.body}
        return h.client.post(f"{path}/{self.action}", headers={**self.caller(h), **headers},
                             **kwargs)


ROUTES = {
    "review": Route(_submitted, "review", lambda h: h.token("specialist"),
                    {"issuable": True}, "matters.certificate.requested"),
    "judge-decision": Route(
        lambda h: f"/applications/{h.reviewed({'needs_judge': True})['id']}",
        "judge-decision", lambda h: h.staff("judge"), DECISION,
        "matters.certificate.requested"),
    "regenerate": Route(lambda h: f"/applications/{_failed(h)['id']}", "regenerate",
                        lambda h: h.token("specialist"), None, "matters.certificate.requested"),
    "publish": Route(lambda h: f"/applications/{_issued(h)['id']}", "publish",
                     lambda h: h.staff("clerk"), None, "matters.application.completed"),
    "approve": Route(_binding, "approve", lambda h: h.staff("judge"), None,
                     "matters.binding.approved"),
    "reject": Route(_binding, "reject", lambda h: h.staff("clerk"),
                    {"reason": "授权委托书未加盖律所公章"}, "matters.binding.rejected"),
}


def _read(h: Harness, path: str) -> tuple[dict[str, Any], str]:
    resp = h.client.get(path, headers=h.token("specialist"))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json(), resp.headers["ETag"]


def _everything(h: Harness, path: str) -> tuple[Any, ...]:
    """The resource as read back, its ETag, and every row of the outbox and the audit trail."""
    body, etag = _read(h, path)
    with h.rt.db.transaction() as session:
        events = session.scalar(select(func.count()).select_from(outbox))
        trail = session.scalar(select(func.count()).select_from(audit_trail))
    return body, etag, events, trail


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_without_if_match_428_and_nothing_changes(h: Harness, name: str) -> None:
    route = ROUTES[name]
    path = route.make(h)
    before = _everything(h, path)
    body = problem_of(route.post(h, path), 428, "precondition-required")
    assert "If-Match" in body["detail"] and "read" in body["detail"]
    assert _everything(h, path) == before  # same version and state, no event, no trail entry
    # a blank header is no precondition either
    problem_of(route.post(h, path, **{"If-Match": "  "}), 428, "precondition-required")
    assert _everything(h, path) == before


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_stale_412_current_etag_goes_through(h: Harness, name: str) -> None:
    route = ROUTES[name]
    path = route.make(h)
    before = _everything(h, path)
    current, etag = before[0], before[1]
    assert etag == f'"{current["version"]}"'  # the ETag clients already get
    stale = f'"{current["version"] - 1}"'
    problem_of(route.post(h, path, **{"If-Match": stale}), 412, "precondition-failed")
    assert _everything(h, path) == before
    done = route.post(h, path, **{"If-Match": etag})
    assert done.status_code == 200, done.get_json()
    assert done.headers["ETag"] == f'"{current["version"] + 1}"'
    assert done.get_json()["version"] == current["version"] + 1
    assert h.emitted(route.emits)


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_star_a_list_a_weak_tag_and_garbage(h: Harness, name: str) -> None:
    """``*`` and a list holding the current tag match; ``W/"<version>"`` does not (strong
    comparison, RFC 9110 §13.1.1); a header with no readable tag is a 400. Never a 500."""
    route = ROUTES[name]
    path = route.make(h)
    before = _everything(h, path)
    etag = before[1]
    weak = problem_of(route.post(h, path, **{"If-Match": f"W/{etag}"}), 412, "precondition-failed")
    assert "weak" in weak["detail"]
    for garbage in (f"{etag} junk", ",,,", 'W/"unterminated'):
        problem_of(route.post(h, path, **{"If-Match": garbage}), 400, "invalid-if-match")
    assert _everything(h, path) == before
    assert route.post(h, path, **{"If-Match": f'"0", {etag}'}).status_code == 200

    other = route.make(h)
    assert route.post(h, other, **{"If-Match": "*"}).status_code == 200


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_a_stranger_is_refused_as_before_not_told_428(h: Harness, name: str) -> None:
    """The precondition is decided after authorisation: staff of another court get the 404 of
    a missing object whether or not they send If-Match, and learn nothing from a 428."""
    route = ROUTES[name]
    path = route.make(h)
    before = _everything(h, path)[:3]
    outsider = h.token("judge", "clerk", "specialist", court=OTHER_COURT)
    for headers in ({}, {"If-Match": "*"}):
        resp = h.client.post(f"{path}/{route.action}", headers={**outsider, **headers},
                             **({} if route.body is None else {"json": route.body}))
        problem_of(resp, 404, "not-found")
    assert _everything(h, path)[:3] == before


def test_two_clerks_decide_the_same_request_the_second_is_told_412(h: Harness) -> None:
    """The judge and the clerk both read the pending request; the judge approves; the clerk's
    reject with the ETag they read is 412, not applied (nor the 409 of a decided request,
    which would tell them less)."""
    path = _binding(h)
    _, etag = _read(h, path)
    approved = ROUTES["approve"].post(h, path, **{"If-Match": etag})
    assert approved.status_code == 200, approved.get_json()
    problem_of(ROUTES["reject"].post(h, path, **{"If-Match": etag}), 412, "precondition-failed")
    assert _read(h, path)[0]["status"] == "approved"
    assert h.emitted("matters.binding.rejected") == []


def test_the_contract_requires_if_match_and_names_412_and_428() -> None:
    """contracts/openapi/matters.json: each update route takes a required If-Match header and
    documents the 428, 412 and 400 problems (failed before: none of it was there)."""
    spec = json.loads((OPENAPI / "matters.json").read_text(encoding="utf-8"))
    for path in [f"/applications/{{application_id}}/{a}"
                 for a in ("review", "judge-decision", "regenerate", "publish")] + [
                 f"/bindings/{{binding_id}}/{a}" for a in ("approve", "reject")]:
        operation = spec["paths"][path]["post"]
        [param] = [p for p in operation["parameters"] if p["name"] == "If-Match"]
        assert (param["in"], param["required"]) == ("header", True), path
        for status in ("428", "412", "400"):
            content = operation["responses"][status]["content"]
            assert "application/problem+json" in content, (path, status)


def test_a_428_is_not_kept_for_the_key_the_mended_retry_runs(h: Harness) -> None:
    """A judge's client sends a decision without If-Match under an Idempotency-Key, is told
    428, reads the application and sends the decision again with its ETag and the same key: it
    runs once (failed before: the 428 was the key's answer, replayed for a day)."""
    route = ROUTES["judge-decision"]
    path = f"{route.make(h)}/{route.action}"
    judge = {**h.staff("judge"), "Idempotency-Key": "decision-mended"}
    problem_of(h.client.post(path, headers=judge, json=route.body), 428,
               "precondition-required")
    _, etag = _read(h, path.rsplit("/", 1)[0])
    mended = {**judge, "If-Match": etag}
    done = h.client.post(path, headers=mended, json=route.body)
    assert done.status_code == 200, done.get_json()
    assert "Idempotent-Replayed" not in done.headers
    again = h.client.post(path, headers=mended, json=route.body)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_data() == done.get_data()
