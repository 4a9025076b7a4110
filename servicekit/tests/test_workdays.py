"""The working-day calendar: the State Council's 2023 arrangement, and a year with no holiday
data counted Monday–Friday with a warning once per year and a metric, never silently."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from servicekit import workdays
from servicekit.workdays import SHANGHAI, add_workdays, is_workday

#: 国务院办公厅关于2023年部分节假日安排的通知: days off, and the weekend days worked (调休)
OFF_2023 = [("2022-12-31", 3), ("2023-01-21", 7), ("2023-04-05", 1), ("2023-04-29", 5),
            ("2023-06-22", 3), ("2023-09-29", 8)]
WORKED_2023 = ["2023-01-28", "2023-01-29", "2023-04-23", "2023-05-06", "2023-06-25",
               "2023-10-07", "2023-10-08"]


def _days(start: str, count: int) -> list[date]:
    return [date.fromisoformat(start) + timedelta(days=i) for i in range(count)]


def _uncovered_count(year: int) -> float:
    return REGISTRY.get_sample_value("workday_calendar_uncovered_days_total",
                                     {"year": str(year)}) or 0.0


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the once-per-year warning as a new process would."""
    monkeypatch.setattr(workdays, "_warned_years", set(), raising=False)


def test_the_2023_holidays_and_make_up_days(caplog: pytest.LogCaptureFixture) -> None:
    """Failed before: 2023 was missing, so its weekday holidays were working days and its
    make-up weekend days off."""
    off = [day for start, count in OFF_2023 for day in _days(start, count)]
    assert [day for day in off if is_workday(day)] == []
    assert [d for d in WORKED_2023 if not is_workday(date.fromisoformat(d))] == []
    # ordinary days around them are unchanged
    assert is_workday(date(2023, 1, 20)) and is_workday(date(2023, 1, 30))
    assert not is_workday(date(2023, 1, 14))                      # an ordinary Saturday
    # Friday 20 January + 1 working day: Saturday 28 January (not Monday 23, Spring Festival)
    end = add_workdays(datetime(2023, 1, 20, 17, 45, tzinfo=SHANGHAI), 1)
    assert end.astimezone(SHANGHAI) == datetime(2023, 1, 28, 17, 45, tzinfo=SHANGHAI)
    assert "no public-holiday data" not in caplog.text


def test_a_year_without_data_counts_monday_to_friday_and_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """Failed before: a year not in the list was counted Monday–Friday with no trace."""
    before = _uncovered_count(2031)
    caplog.set_level(logging.WARNING, logger="servicekit.workdays")
    assert is_workday(date(2031, 1, 1))             # a Wednesday: New Year's Day not known
    assert not is_workday(date(2031, 1, 4))         # a Saturday
    end = add_workdays(datetime(2031, 1, 10, 9, 0, tzinfo=SHANGHAI), 5)
    assert end.astimezone(SHANGHAI) == datetime(2031, 1, 17, 9, 0, tzinfo=SHANGHAI)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2031" in warnings[0].getMessage()
    assert _uncovered_count(2031) - before == 2 + 7   # every day looked up counts
    # another uncovered year warns on its own
    assert is_workday(date(2032, 6, 1))
    assert is_workday(date(2032, 6, 2))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "2032" in warnings[1]


def test_a_deadline_crossing_into_an_uncovered_year_still_comes_back() -> None:
    """No data is no crash: a deadline is computed (and noted) for the request at hand."""
    last = max(workdays.COVERED_YEARS)
    start = datetime(last, 12, 24, 10, 0, tzinfo=SHANGHAI)
    before = _uncovered_count(last + 1)
    end = add_workdays(start, 10)
    assert end.astimezone(SHANGHAI).year == last + 1
    assert _uncovered_count(last + 1) > before


def test_the_lists_hold_only_covered_years() -> None:
    """A year's notice may start on 31 December before it; nothing else lies outside the
    covered years, and no day is both off and worked."""
    for day in workdays.HOLIDAYS | workdays.MAKEUP_WORKDAYS:
        assert day.year in workdays.COVERED_YEARS or (
            (day.month, day.day) == (12, 31) and day.year + 1 in workdays.COVERED_YEARS), day
    assert not workdays.HOLIDAYS & workdays.MAKEUP_WORKDAYS
    assert all(day.weekday() >= 5 for day in workdays.MAKEUP_WORKDAYS)
