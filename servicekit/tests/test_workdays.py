"""The working-day calendar: the State Council's arrangements from the chinese-calendar package
(2023, 2026), the court administrator's file (ECOURT_WORKDAY_CALENDAR_FILE) adding or
correcting a year, read at a process's start; a year neither has counted Monday–Friday with a
warning once per year and a metric, never silently."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from servicekit import workdays
from servicekit.config import CalendarYear, ConfigError, Settings
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


#: 国务院办公厅关于2026年部分节假日安排的通知 [DOMAIN.md, the working-day calendar]
WORKED_2026 = ["2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20",
               "2026-10-10"]


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the once-per-year warning as a new process would, and leaves the
    process's calendar as it found it."""
    monkeypatch.setattr(workdays, "_warned_years", set(), raising=False)
    monkeypatch.setattr(workdays, "_calendar", workdays._calendar)


def _last_year_gauge() -> float | None:
    return REGISTRY.get_sample_value("workday_calendar_last_year")


def _calendar_file(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "workday-calendar.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


#: a made-up year for the file's tests (not the State Council's 2027: none is invented here)
FILE_2027 = {"2027": {"holidays": ["2027-01-01", "2027-02-08", "2027-02-09"],
                      "workdays": ["2027-02-06"]}}


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
    last = max(workdays.covered_years())
    start = datetime(last, 12, 24, 10, 0, tzinfo=SHANGHAI)
    before = _uncovered_count(last + 1)
    end = add_workdays(start, 10)
    assert end.astimezone(SHANGHAI).year == last + 1
    assert _uncovered_count(last + 1) > before


def test_2026_comes_from_the_chinese_calendar_package(caplog: pytest.LogCaptureFixture) -> None:
    """Sunday 4 January and Saturdays 14 and 28 February 2026 are worked, 16-23 February
    (Spring Festival, Monday to Monday) are off; the package knows 2004-2026."""
    assert [d for d in WORKED_2026 if not is_workday(date.fromisoformat(d))] == []
    assert [day for day in _days("2026-02-15", 9) if is_workday(day)] == []
    assert is_workday(date(2026, 2, 13)) and is_workday(date(2026, 2, 24))
    assert set(range(2004, 2027)) <= workdays.covered_years()
    # Friday 13 February + 1 working day: Saturday 14 (worked); + 2: Tuesday 24
    start = datetime(2026, 2, 13, 9, 30, tzinfo=SHANGHAI)
    assert add_workdays(start, 1).astimezone(SHANGHAI).date() == date(2026, 2, 14)
    assert add_workdays(start, 2).astimezone(SHANGHAI).date() == date(2026, 2, 24)
    assert "no public-holiday data" not in caplog.text


def test_the_administrator_s_file_adds_a_year(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed before: nothing but a release could add a year. The file is read with the
    settings at a process's start and the runtime counts with it: 2027 is covered, its
    holidays are off, its make-up Saturday worked, the uncovered-days metric stays still and
    the gauge says 2027."""
    from ecourt import registry
    from ecourt.runtime import make_runtime

    monkeypatch.setenv("ECOURT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECOURT_WORKDAY_CALENDAR_FILE", str(_calendar_file(tmp_path, FILE_2027)))
    before = _uncovered_count(2027)
    assert is_workday(date(2027, 1, 1))                     # before: a Friday, not known
    rt = make_runtime(registry.get("matters"), Settings.from_env("matters"), None,
                      migrate=False)
    rt.db.dispose()
    after = _uncovered_count(2027)
    assert 2027 in workdays.covered_years()
    assert not is_workday(date(2027, 1, 1)) and not is_workday(date(2027, 2, 8))
    assert is_workday(date(2027, 2, 6))                     # a Saturday worked
    assert is_workday(date(2027, 1, 4)) and not is_workday(date(2027, 1, 2))
    assert _uncovered_count(2027) == after
    assert _last_year_gauge() == 2027
    # Thursday 31 December 2026 + 1 working day: Monday 4 January (1 January is off)
    end = add_workdays(datetime(2026, 12, 31, 17, 0, tzinfo=SHANGHAI), 1)
    assert end.astimezone(SHANGHAI) == datetime(2027, 1, 4, 17, 0, tzinfo=SHANGHAI)
    assert after - before == 1                              # the one look-up before loading


def test_a_year_in_the_file_replaces_the_package_s() -> None:
    """A correction: the file's 2026 is the whole of 2026, the package's is set aside."""
    workdays.use({2026: CalendarYear(frozenset({date(2026, 3, 2)}), frozenset())})
    assert not is_workday(date(2026, 3, 2))                 # a Monday, off by the file
    assert not is_workday(date(2026, 1, 4))                 # the package's make-up Sunday
    assert is_workday(date(2026, 2, 16))                    # the package's Spring Festival
    assert not is_workday(date(2025, 1, 28))                # other years: the package's
    assert _last_year_gauge() == 2026


def test_a_year_past_a_gap_does_not_move_the_last_covered_year() -> None:
    """2028 without 2027: 2027 is still counted Monday to Friday, so the gauge stays 2026."""
    workdays.use({2028: CalendarYear(frozenset({date(2028, 1, 3)}), frozenset())})
    assert 2028 in workdays.covered_years() and 2027 not in workdays.covered_years()
    assert _last_year_gauge() == 2026


def test_an_empty_file_is_the_package_alone(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped file is ``{}``: the package's years, nothing added."""
    monkeypatch.setenv("ECOURT_WORKDAY_CALENDAR_FILE", str(_calendar_file(tmp_path, {})))
    monkeypatch.setenv("ECOURT_DATA_DIR", str(tmp_path))
    settings = Settings.from_env("identity")
    assert settings.workday_calendar == {}
    assert workdays.use(settings.workday_calendar) == workdays.build({})
    assert max(workdays.covered_years()) == 2026 and _last_year_gauge() == 2026


@pytest.mark.parametrize(("data", "problem"), [
    ([], "JSON object of years"),
    ({"27": FILE_2027["2027"]}, "'27' is not a year"),
    ({"2027\n": FILE_2027["2027"]}, "'2027\\n' is not a year"),
    ({"２０２７": FILE_2027["2027"]}, "'２０２７' is not a year"),
    ({"2027": {"holidays": ["2027-01-01"]}}, "exactly \"holidays\" and \"workdays\""),
    ({"2027": {"holidays": "2027-01-01", "workdays": []}}, "must be a list of dates"),
    ({"2027": {"holidays": ["2027-1-1"], "workdays": []}}, "'2027-1-1' is not a date"),
    ({"2027": {"holidays": ["2026-12-31"], "workdays": []}}, "2026-12-31 is not in 2027"),
    ({"2027": {"holidays": [], "workdays": ["2027-02-06"]}}, "2027 lists no holidays"),
    ({"2027": {"holidays": ["2027-02-06"], "workdays": ["2027-02-06"]}},
     "2027-02-06 is listed both"),
    # Monday 8 February: a weekday is worked anyway, so listing it is a slip
    ({"2027": {"holidays": ["2027-01-01"], "workdays": ["2027-02-08"]}},
     "workday 2027-02-08 is a weekday"),
])
def test_a_bad_file_is_a_config_error_naming_the_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: object, problem: str) -> None:
    monkeypatch.setenv("ECOURT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECOURT_WORKDAY_CALENDAR_FILE", str(_calendar_file(tmp_path, data)))
    with pytest.raises(ConfigError, match="ECOURT_WORKDAY_CALENDAR_FILE") as raised:
        Settings.from_env("matters")
    assert problem in str(raised.value)


@pytest.mark.parametrize("content", ["{\"2027\": ", b"\xff\xfe{}", None])
def test_a_file_that_is_no_json_or_missing_is_a_config_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | bytes | None) -> None:
    path = tmp_path / "workday-calendar.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    monkeypatch.setenv("ECOURT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECOURT_WORKDAY_CALENDAR_FILE", str(path))
    with pytest.raises(ConfigError, match=f"ECOURT_WORKDAY_CALENDAR_FILE={path}"):
        Settings.from_env("matters")
