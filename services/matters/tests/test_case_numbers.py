"""A case number is taken whole and in 0-9 digits: the trial system's number is the case's key,
so a variant of it must not register the same case a second time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from servicekit.db import utcnow
from servicekit.workdays import local_date
from services.matters.domain import case_number_error
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


def _beijing_year() -> int:
    return local_date(utcnow()).year


@pytest.mark.parametrize("year", [
    lambda: "0000", lambda: "1948", lambda: str(_beijing_year() + 1),
    lambda: str(_beijing_year() + 2), lambda: "9999",
], ids=["0000", "before-1949", "next-year", "the-year-after", "9999"])
def test_a_case_number_of_a_year_no_case_was_received_in_is_refused(harness: Harness,
                                                                    year: Any) -> None:
    """The year of a case number is the year the court received the case: 0000, a year before
    the People's courts (1949) or a year not yet begun in Beijing was registered. Now 422
    naming case_number and the years taken, on registration and on a binding request; nothing
    is kept. (next-year holds except on 31 December in Beijing, when next year is taken.)"""
    if year() == str(_beijing_year() + 1) and local_date(utcnow()).strftime("%m-%d") == "12-31":
        pytest.skip("on 31 December next year's numbers are taken")
    number = f"({year()}){COURT}民初{uuid.uuid4().int % 10**6}号"
    staff = harness.token("specialist")
    resp = harness.client.post("/cases", headers=staff, json=_body(harness, number))
    assert resp.status_code == 422, resp.get_json()
    assert resp.content_type == "application/problem+json"
    [message] = resp.get_json()["errors"]["json"]["case_number"]
    assert f"1949 to {_beijing_year()}" in message
    assert harness.client.get("/cases", headers=staff).get_json() == []
    asked = harness.ask(number)
    assert asked.status_code == 422, asked.get_json()
    assert "case_number" in asked.get_json()["errors"]["form"]
    assert harness.emitted() == []


@pytest.mark.parametrize("year", [lambda: 1949, _beijing_year], ids=["1949", "this-year"])
def test_a_case_number_of_1949_or_of_this_year_is_taken(harness: Harness, year: Any) -> None:
    number = f"({year()}){COURT}民初{uuid.uuid4().int % 10**6}号"
    resp = harness.client.post("/cases", headers=harness.token("specialist"),
                               json=_body(harness, number))
    assert resp.status_code == 201, resp.get_json()


def test_the_years_taken_follow_the_calendar_of_beijing_not_a_fixed_year() -> None:
    """The bound is computed from the day, in Beijing time: it does not rot."""
    new_year_utc = datetime(2030, 12, 31, 16, 0, tzinfo=UTC)  # 2031-01-01 00:00 in Beijing
    number = "(2031)粤01民初8号"
    assert case_number_error(number, new_year_utc - timedelta(days=2)) is not None
    assert case_number_error(number, new_year_utc - timedelta(hours=1)) is None  # 31 Dec
    assert case_number_error(number, new_year_utc) is None
    assert case_number_error("(2032)粤01民初8号", new_year_utc) is not None
    assert case_number_error("(1949)粤01民初8号", new_year_utc) is None
    assert case_number_error("(1948)粤01民初8号", new_year_utc) is not None
    assert case_number_error("(2021)粤01民初8号\n", new_year_utc) is not None


@pytest.mark.parametrize("number", [
    "(2021)粤01民初8号",          # an intermediate court
    "(2021)粤0104民初45号",       # a basic court
    "(2021)粤民终1号",            # a high court: the province alone
    "(2020)最高法民申1234号",     # the Supreme People's Court
    "(2022)粤73知民初1号",        # a special-trial character before the type
    "(2021)粤01民初8号之一",      # a number's 之一
    "（2021）粤01民初8号",        # full-width brackets
], ids=["intermediate", "basic", "high", "supreme", "ip", "zhiyi", "fullwidth-brackets"])
def test_every_form_of_case_number_courts_write_is_taken(number: str) -> None:
    """DOMAIN.md's case numbers: a high court's and the Supreme People's Court's numbers, and
    之一, were refused (the court code had to carry digits, nothing could follow 号), and so
    was a number in full-width brackets, which courts write as often as plain ones."""
    assert case_number_error(number, datetime(2026, 6, 1, tzinfo=UTC)) is None


@pytest.mark.parametrize("number", [
    "(2021)粤010民初8号", "(2021)粤01民初号", "(2021)粤01民初8", "(2021)粤01民初8号之",
    "(21)粤01民初8号", "(2021)粤01民初8号之1",
], ids=["three-digit-court", "no-sequence", "no-hao", "bare-zhi", "two-digit-year",
        "zhi-digit"])
def test_a_malformed_case_number_is_still_refused(number: str) -> None:
    assert case_number_error(number, datetime(2026, 6, 1, tzinfo=UTC)) is not None


def test_full_width_brackets_are_the_same_case_kept_in_plain_ones(harness: Harness) -> None:
    """Registered in full-width brackets, the case is kept in plain ones (one printed form);
    the same number in plain brackets is that case (409), not a second one; a lawyer naming it
    in full-width brackets finds it (``test_todo_export``: the to-do search too)."""
    number = case_number(COURT)
    wide = number.replace("(", "（").replace(")", "）")
    staff = harness.token("specialist")
    resp = harness.client.post("/cases", headers=staff, json=_body(harness, wide))
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["case_number"] == number
    again = harness.client.post("/cases", headers=staff, json=_body(harness, number))
    assert again.status_code == 409, again.get_json()
    assert [c["case_number"] for c in harness.client.get("/cases", headers=staff).get_json()] \
        == [number]
    asked = harness.ask(wide, party_name="周俊雄")
    assert asked.status_code == 201, asked.get_json()
    assert asked.get_json()["case_number"] == number
