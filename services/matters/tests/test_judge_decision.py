"""The presiding judge's decision (后台办理) [000 二]: only the case's own presiding judge
decides; another judge of the court gets 403 with the refusal on the audit trail naming the
application, as publishing and regenerating do (``access.ensure_judge_or_clerk_of``)."""

from __future__ import annotations

from typing import Any

from services.matters.tests.conftest import APPLY, OTHER_COURT, Harness

DECISION = {"opinion": "同意", "result_note": "判决已生效", "handler_name": "王法官",
            "decided_on": "2021-08-01", "effective_date": "2021-07-20"}


def _transferred(h: Harness) -> dict[str, Any]:
    """An application the specialist transferred to the presiding judge (后台待办)."""
    return h.reviewed({"needs_judge": True})


def _decide(h: Harness, app: dict[str, Any], headers: dict[str, str]):  # type: ignore[no-untyped-def]
    """Decide as a client does: with the If-Match of the application as just read."""
    path = f"/applications/{app['id']}"
    return h.client.post(f"{path}/judge-decision", headers={**headers, **h.if_match(path)},
                         json=DECISION)


def test_another_judge_of_the_court_is_refused_on_the_audit_trail(harness: Harness) -> None:
    """Failed before: the refusal was the handler's own 403, recorded against the route and
    not the application."""
    h = harness
    app = _transferred(h)
    refused = _decide(h, app, h.token("judge", sub="judge-of-another-case"))
    assert refused.status_code == 403, refused.get_json()
    assert refused.content_type == "application/problem+json"
    assert refused.get_json()["type"].endswith("/forbidden")
    [denied] = h.denials(f"application:{app['id']}")
    assert (denied.action, denied.actor) == ("access.denied", "judge-of-another-case")
    after = h.client.get(f"/applications/{app['id']}", headers=h.token("specialist")).get_json()
    assert (after["status"], after["version"]) == (app["status"], app["version"])
    # staff of another court do not learn the application exists
    assert _decide(h, app, h.token("judge", court=OTHER_COURT)).status_code == 404


def test_the_relation_is_checked_before_the_state(harness: Harness) -> None:
    """Another judge learns nothing of the application's state: 403, not the 409 the case's
    own judge gets for an application not (or no longer) in the back office. Failed before
    (409: the state was checked first)."""
    h = harness
    case = h.case()
    app = h.client.post(f"/cases/{case['id']}/applications", headers=h.party(),
                        json=APPLY).get_json()
    assert _decide(h, app, h.token("judge", sub="judge-of-another-case")).status_code == 403
    assert _decide(h, app, h.staff("judge")).status_code == 409


def test_the_case_s_clerk_does_not_decide_even_with_the_judge_role(harness: Harness) -> None:
    """The clerk assists the panel; the decision is the presiding judge's alone."""
    h = harness
    app = _transferred(h)
    refused = _decide(h, app, h.token("judge", sub=h.ids["clerk"]))
    assert refused.status_code == 403, refused.get_json()
    assert len(h.denials(f"application:{app['id']}")) == 1


def test_the_case_s_own_judge_decides(harness: Harness) -> None:
    h = harness
    app = _transferred(h)
    decided = _decide(h, app, h.staff("judge"))
    assert decided.status_code == 200, decided.get_json()
    assert decided.get_json()["document"]["state"] == "generating"
    assert h.denials(f"application:{app['id']}") == []
