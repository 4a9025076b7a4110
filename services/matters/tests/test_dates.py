"""The dates a case is registered with (its judgment's date, its effective date) and the ones
the presiding judge records are of things that happened: none before the People's courts
(1949-10-01), none after today in Beijing. Year 1 or 9999 was taken, and a certificate could
have certified a judgment effective on a day still to come."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from servicekit.db import utcnow
from servicekit.testing import problem_of
from servicekit.workdays import local_date
from services.matters.tests.conftest import COURT, COURT_NAME, Harness, case_number
from services.matters.tests.test_judge_decision import DECISION


def _today() -> str:
    return local_date(utcnow()).isoformat()


def _tomorrow() -> str:
    return (local_date(utcnow()) + timedelta(days=1)).isoformat()


OUT_OF_BOUNDS = [lambda: "0001-01-01", lambda: "1949-09-30", _tomorrow, lambda: "9999-12-31"]
OUT_IDS = ["year-1", "before-1949-10-01", "tomorrow", "year-9999"]


def _case_body(h: Harness, **overrides: Any) -> dict[str, Any]:
    return {"case_number": case_number(COURT), "court": COURT, "court_name": COURT_NAME,
            "cause": "买卖合同纠纷", "department": "民一庭",
            "judge_account_id": h.ids["judge"], "clerk_account_id": h.ids["clerk"],
            "parties": [{"name": "周俊雄", "role": "plaintiff", "account_id": None}],
            **overrides}


def _register(h: Harness, body: dict[str, Any]):  # type: ignore[no-untyped-def]
    return h.client.post("/cases", headers=h.token("specialist"), json=body)


@pytest.mark.parametrize("day", OUT_OF_BOUNDS, ids=OUT_IDS)
@pytest.mark.parametrize("where", ["effective_date", "judgment.decided_on"])
def test_a_case_s_date_out_of_bounds_is_refused_naming_it(harness: Harness, day: Any,
                                                          where: str) -> None:
    h = harness
    if where == "effective_date":
        body = _case_body(h, effective_date=day())
    else:
        body = _case_body(h, judgment={"title": "民事判决书", "decided_on": day()})
    problem = problem_of(_register(h, body), 422, "validation-error")
    field = problem["errors"]["json"]
    for part in where.split("."):
        field = field[part]
    assert "1949-10-01" in field[0] and _today() in field[0]
    assert h.client.get("/cases", headers=h.token("specialist")).get_json() == []
    assert h.emitted() == []


@pytest.mark.parametrize("day", [lambda: "1949-10-01", _today], ids=["1949-10-01", "today"])
def test_a_case_s_dates_from_1949_10_01_to_today_are_taken(harness: Harness, day: Any) -> None:
    body = _case_body(harness, effective_date=day(),
                      judgment={"title": "民事判决书", "decided_on": day()})
    resp = _register(harness, body)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["effective_date"] == day()


def test_a_judgment_effective_before_it_was_decided_is_refused(harness: Harness) -> None:
    body = _case_body(harness, effective_date="2021-06-30",
                      judgment={"title": "民事判决书", "decided_on": "2021-07-01"})
    problem = problem_of(_register(harness, body), 422, "validation-error")
    assert list(problem["errors"]["json"]) == ["effective_date"]


def _transferred(h: Harness) -> tuple[str, dict[str, Any]]:
    app = h.reviewed({"needs_judge": True})
    return f"/applications/{app['id']}", app


@pytest.mark.parametrize("day", OUT_OF_BOUNDS, ids=OUT_IDS)
@pytest.mark.parametrize("field", ["decided_on", "effective_date"])
def test_a_judge_s_date_out_of_bounds_is_refused_and_nothing_changes(
        harness: Harness, day: Any, field: str) -> None:
    h = harness
    path, app = _transferred(h)
    decision = {**DECISION, field: day()}
    if field == "effective_date" and day() > DECISION["decided_on"]:
        decision["decided_on"] = _today()  # only the bound is wrong, not the order
    resp = h.client.post(f"{path}/judge-decision", json=decision,
                         headers={**h.staff("judge"), **h.if_match(path)})
    problem = problem_of(resp, 422, "validation-error")
    assert list(problem["errors"]["json"]) == [field]
    after = h.client.get(path, headers=h.token("specialist")).get_json()
    assert (after["status"], after["version"], after["judge_decided_on"]) == (
        app["status"], app["version"], None)
    case = h.client.get(f"/cases/{app['case_id']}", headers=h.token("specialist")).get_json()
    assert case["effective_date"] == "2021-07-01"  # as registered


def test_a_judge_s_effective_date_after_the_decision_is_refused(harness: Harness) -> None:
    h = harness
    path, _ = _transferred(h)
    decision = {**DECISION, "decided_on": "2021-07-19", "effective_date": "2021-07-20"}
    resp = h.client.post(f"{path}/judge-decision", json=decision,
                         headers={**h.staff("judge"), **h.if_match(path)})
    assert list(problem_of(resp, 422, "validation-error")["errors"]["json"]) == [
        "effective_date"]
    today = {**DECISION, "decided_on": _today(), "effective_date": _today()}
    done = h.client.post(f"{path}/judge-decision", json=today,
                         headers={**h.staff("judge"), **h.if_match(path)})
    assert done.status_code == 200, done.get_json()
