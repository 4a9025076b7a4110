"""RELIABILITY S1/S2 on every route of the matters app (walked from ``app.url_map``, so a new
route is covered the day it is added): no token, an expired token, a tampered token → 401; a
party of another case, a lawyer with no binding, staff of another court → never 2xx, never 5xx
(404 on object routes, 403 where the role does not fit)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from services.matters.tests.conftest import OTHER_COURT, PDF, Harness
from tests.route_walk import routes, tampered, url_of


def _routes(h: Harness) -> list[tuple[str, str]]:
    return [route.key for route in routes(h.client.application)]


def _objects(h: Harness) -> dict[str, str]:
    """Real objects of a case in 粤01: its case, an application, a pending binding."""
    case = h.case()
    app = h.client.post(f"/cases/{case['id']}/applications", headers=h.party(), json={
        "kind": "effectiveness_certificate", "reason": "r", "use": "u"}).get_json()
    binding = h.ask(case["case_number"]).get_json()
    return {"case_id": case["id"], "application_id": app["id"], "binding_id": binding["id"],
            "case_number": case["case_number"]}


def _call(h: Harness, method: str, rule: str, ids: dict[str, str],
          headers: dict[str, str]) -> Any:
    url = url_of(rule, ids)
    if rule == "/bindings" and method == "POST":
        return h.client.post(url, headers=headers, content_type="multipart/form-data", data={
            "case_number": ids["case_number"], "party_name": "黄添强",
            "letter": (io.BytesIO(PDF), "letter.pdf", "application/pdf")})
    # a valid body for each route, so that the object check (not validation) answers
    bodies: dict[str, dict[str, Any]] = {
        "/cases": {"case_number": "(2021)粤01民初1号", "court": "粤01", "court_name": "法院",
                   "cause": "c", "department": "d", "judge_account_id": "j",
                   "parties": [{"name": "甲", "role": "plaintiff"}]},
        "/cases/<case_id>/applications": {"kind": "effectiveness_certificate", "reason": "r",
                                          "use": "u"},
        "/applications/<application_id>/review": {"issuable": True},
        "/applications/<application_id>/judge-decision": {
            "opinion": "o", "result_note": "n", "handler_name": "h",
            "decided_on": "2021-01-01", "effective_date": "2021-01-01"},
        "/bindings/<binding_id>/reject": {"reason": "x"},
        "/cases/<case_id>/lawyers": {"lawyer_account_id": h.ids["lawyer"],
                                     "party_name": "黄添强"},
    }
    return h.client.open(url, method=method, headers=headers,
                         json=bodies.get(rule, {}) if method in ("POST", "PUT", "PATCH")
                         else None)


def _tampered(h: Harness) -> dict[str, str]:
    token = h.staff("judge")["Authorization"].removeprefix("Bearer ")
    return {"Authorization": f"Bearer {tampered(token)}"}


CALLERS = ("no token", "expired", "tampered", "party of another case",
           "lawyer without binding", "staff of another court")


@pytest.mark.parametrize("caller", CALLERS)
def test_every_route_refuses_outsiders(harness: Harness, caller: str) -> None:
    h = harness
    ids = _objects(h)
    # the lawyer who asked (pending) is the "lawyer without binding": pending gives nothing
    other_party = h.token("party", court=None)
    headers = {
        "no token": {},
        "expired": h.token("judge", sub=h.ids["judge"], ttl=-120),
        "tampered": _tampered(h),
        "party of another case": other_party,
        "lawyer without binding": h.lawyer(),
        "staff of another court": {"Authorization": h.token(
            "judge", "clerk", "specialist", court=OTHER_COURT)["Authorization"]},
    }[caller]
    routes = _routes(h)
    assert len(routes) >= 15, routes
    leaks = []
    for method, rule in routes:
        resp = _call(h, method, rule, ids, headers)
        status = resp.status_code
        if caller in ("no token", "expired", "tampered"):
            ok = status == 401
        elif caller == "lawyer without binding" and rule in ("/bindings", "/bindings/<binding_id>",
                                                              "/bindings/<binding_id>/letter"):
            # their own request: they may make and read it, nothing of the case beyond it
            ok = status < 500 and (status != 201 or method == "POST")
            if method == "POST" and rule == "/bindings":
                ok = status == 409  # asked already
        elif caller == "staff of another court" and rule in (
                "/cases", "/todo", "/todo/export", "/bindings", "/lawyers") and method == "GET":
            text = resp.get_data(as_text=True)  # their own court's list: not this case
            ok = status == 200 and ids["case_id"] not in text and ids["case_number"] not in text
        elif caller == "staff of another court" and (method, rule) == ("POST", "/cases"):
            ok = status in (403, 404, 422)  # registering a case in another court
        elif (caller in ("party of another case", "lawyer without binding")
              and (method, rule) == ("GET", "/cases")):
            ok = status == 200 and ids["case_id"] not in resp.get_data(as_text=True)
        else:
            ok = status in (403, 404)
        if not ok:
            leaks.append((method, rule, status))
    assert leaks == [], leaks
