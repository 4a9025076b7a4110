"""A case number is taken whole and in 0-9 digits: the trial system's number is the case's key,
so a variant of it must not register the same case a second time."""

from __future__ import annotations

from typing import Any

import pytest

from services.matters.tests.conftest import COURT, COURT_NAME, Harness, case_number


def _body(harness: Harness, number: str) -> dict[str, Any]:
    return {"case_number": number, "court": COURT, "court_name": COURT_NAME,
            "cause": "买卖合同纠纷", "department": "民一庭",
            "judge_account_id": harness.ids["judge"], "clerk_account_id": harness.ids["clerk"],
            "parties": [{"name": "周俊雄", "role": "plaintiff", "account_id": None}]}


@pytest.mark.parametrize("variant", [
    lambda n: n + "\n",                                        # `$` matched before it
    lambda n: n.replace("2021", "٢٠٢١"),                       # Arabic-Indic digits
    lambda n: n.replace("2021", "２０２１"),                   # full-width digits
], ids=["trailing-newline", "arabic-indic-digits", "fullwidth-digits"])
def test_a_variant_of_a_case_number_is_refused_not_a_second_case(harness: Harness,
                                                                  variant: Any) -> None:
    number = case_number(COURT)
    staff = harness.token("specialist")
    assert harness.client.post("/cases", headers=staff,
                               json=_body(harness, number)).status_code == 201
    resp = harness.client.post("/cases", headers=staff, json=_body(harness, variant(number)))
    assert resp.status_code == 422, resp.get_json()
    assert "case_number" in resp.get_json()["errors"]["json"]
    listed = harness.client.get("/cases", headers=staff).get_json()
    assert [c["case_number"] for c in listed] == [number]
