"""Who publishes (引入) and regenerates (重新生成文书) a certificate [000]: a specialist of the
court for any of its applications (中台待办服务), a judge or a clerk only for their own case
(网上待办服务); another judge or clerk of the court gets 403 on the audit trail, staff of
another court 404."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from servicekit.db import utcnow
from services.matters.tests.conftest import COURT, OTHER_COURT, Harness


def _reviewed(h: Harness) -> dict[str, Any]:
    """An application the specialist found issuable: its certificate is being generated."""
    return h.reviewed({"issuable": True})


def _request_id(h: Harness) -> str:
    return h.emitted("matters.certificate.requested")[-1]["data"]["request_id"]


def _issued(h: Harness) -> dict[str, Any]:
    app = _reviewed(h)
    h.deliver("documents.document.issued", {
        "document_id": str(uuid.uuid4()), "request_id": _request_id(h),
        "application_id": app["id"], "court": COURT, "kind": app["kind"],
        "code": "ABCD-EFGH-JKMN-PQRS", "sha256": "0" * 64,
        "issued_at": utcnow().isoformat().replace("+00:00", "Z"),
        "verify_url": "https://ecourt.example/verify/ABCD-EFGH-JKMN-PQRS"})
    return app


def _failed(h: Harness) -> dict[str, Any]:
    app = _reviewed(h)
    h.deliver("documents.render.failed", {"request_id": _request_id(h),
                                          "application_id": app["id"], "court": COURT,
                                          "reason": "no seal registered"})
    return app


def _state(h: Harness, app: dict[str, Any]) -> dict[str, Any]:
    resp = h.client.get(f"/applications/{app['id']}", headers=h.token("specialist"))
    return resp.get_json()


ACTIONS = {"publish": _issued, "regenerate": _failed}


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("role", ["judge", "clerk"])
def test_a_judge_or_clerk_of_another_case_is_refused_and_audited(
        harness: Harness, action: str, role: str) -> None:
    """Failed before: any judge or clerk of the court could publish or regenerate the
    certificate of any of its cases."""
    h = harness
    app = ACTIONS[action](h)
    before = _state(h, app)
    stranger = f"{role}-of-another-case"
    refused = h.client.post(f"/applications/{app['id']}/{action}",
                            headers=h.token(role, sub=stranger))
    assert refused.status_code == 403, refused.get_json()
    assert refused.content_type == "application/problem+json"
    assert refused.get_json()["type"].endswith("/forbidden")
    [denied] = h.denials(f"application:{app['id']}")
    assert (denied.action, denied.actor) == ("access.denied", stranger)
    after = _state(h, app)
    assert (after["status"], after["document"], after["version"]) == (
        before["status"], before["document"], before["version"])
    # staff of another court do not learn the application exists
    assert h.client.post(f"/applications/{app['id']}/{action}",
                         headers=h.token(role, court=OTHER_COURT)).status_code == 404


#: what each action has done when it is let through
DONE: dict[str, tuple[Callable[[dict[str, Any]], str], str]] = {
    "publish": (lambda a: a["status"], "completed"),
    "regenerate": (lambda a: a["document"]["state"], "generating")}


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("who", ["the case's judge", "the case's clerk", "any specialist"])
def test_the_cases_own_judge_or_clerk_and_any_specialist_may(harness: Harness, action: str,
                                                             who: str) -> None:
    """The middle office works every case of the court: a specialist who is neither the
    case's judge nor its clerk may act, as the case's own judge and clerk may."""
    h = harness
    app = ACTIONS[action](h)
    headers = {"the case's judge": h.staff("judge"), "the case's clerk": h.staff("clerk"),
               "any specialist": h.token("specialist")}[who]
    resp = h.client.post(f"/applications/{app['id']}/{action}",
                         headers={**headers, **h.if_match(f"/applications/{app['id']}")})
    assert resp.status_code == 200, resp.get_json()
    shown, done = DONE[action]
    assert shown(resp.get_json()) == done
    assert h.denials(f"application:{app['id']}") == []
