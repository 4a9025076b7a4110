"""Working days of mainland China: weekends and public holidays off, make-up days on.

Service-level deadlines count working days. The days off and the weekend days worked instead
(调休) are the State Council's annual notice (国务院办公厅关于某年部分节假日安排的通知), published
each November for the next year. They are data, never code:

* the ``chinese-calendar`` package (pinned in constraints.txt) knows every year from 2004 to
  the year before its release (1.11.0: 2026);
* the court's administrator adds a year the package does not know yet, or corrects one, in
  the JSON file ``ECOURT_WORKDAY_CALENDAR_FILE`` names (``servicekit.config.calendar_years``
  checks it)::

      {"2027": {"holidays": ["2027-01-01", ...], "workdays": ["2027-02-06", ...]}}

  A year in the file replaces the package's for that year, whole. The file is read when a
  process starts (``ecourt.runtime.make_runtime``: ``ecourt run``, ``serve``, ``relay``,
  ``consume``, ``scheduler``); when the notice is out the administrator edits
  ``deploy/calendar/workday-calendar.json``, from which Kubernetes' ``workday-calendar``
  ConfigMap is generated and which docker-compose mounts, and the processes restart — no
  release.

A day in a year neither knows is counted plain Monday–Friday: its public holidays are working
days and its make-up days are off, so a deadline across them comes out early. That is still an
answer (a request never fails over it), but never a silent one: the first such day of each
year logs a WARNING naming the year, once per process, and every such day counts in
``workday_calendar_uncovered_days_total{year}``. A process given the file also sets
``workday_calendar_last_year`` (the last year of the unbroken run of covered years), so the
alert (deploy/prometheus/alerts.yml) comes in November, before any deadline reaches the year.
Times are converted to Asia/Shanghai before counting, since a court's day is Beijing time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

from servicekit.config import CalendarYear
from servicekit.metrics import WORKDAY_CALENDAR_LAST_YEAR, WORKDAY_CALENDAR_UNCOVERED

SHANGHAI = ZoneInfo("Asia/Shanghai")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calendar:
    """The days off and the days worked of every covered year, as one process counts them."""

    holidays: frozenset[date]
    workdays: frozenset[date]
    years: frozenset[int]

    @property
    def last_year(self) -> int:
        """The last year up to which every year is covered (a year added past a gap does not
        count: the gap would be counted Monday to Friday first)."""
        year = min(self.years)
        while year + 1 in self.years:
            year += 1
        return year


def library_years() -> dict[int, CalendarYear]:
    """The ``chinese-calendar`` package's years, each date under its own year."""
    holidays: dict[int, set[date]] = {}
    workdays: dict[int, set[date]] = {}
    for days, source in ((holidays, chinese_calendar.holidays),
                         (workdays, chinese_calendar.workdays)):
        for day in source:
            days.setdefault(day.year, set()).add(day)
    return {year: CalendarYear(frozenset(days), frozenset(workdays.get(year, ())))
            for year, days in holidays.items()}


def build(overrides: Mapping[int, CalendarYear]) -> Calendar:
    """The package's years with ``overrides`` (the administrator's) in place of or beside
    them."""
    years = {**library_years(), **overrides}
    return Calendar(holidays=frozenset().union(*(y.holidays for y in years.values())),
                    workdays=frozenset().union(*(y.workdays for y in years.values())),
                    years=frozenset(years))


_calendar = build({})


def use(overrides: Mapping[int, CalendarYear]) -> Calendar:
    """Count with the package's years and ``overrides`` from now on, in the whole process (a
    process's services share it); at start, from the file (``make_runtime``)."""
    global _calendar
    calendar = build(overrides)
    if calendar != _calendar:
        log.info("working-day calendar: %s-%s, of which %s from the administrator's file",
                 min(calendar.years), calendar.last_year,
                 ", ".join(map(str, sorted(overrides))) or "none")
    _calendar = calendar
    WORKDAY_CALENDAR_LAST_YEAR.set(calendar.last_year)
    return calendar


def covered_years() -> frozenset[int]:
    """The years with holiday data; any other year counts Monday–Friday."""
    return _calendar.years


_warned_years: set[int] = set()
_warned_lock = threading.Lock()


def _note_uncovered(year: int) -> None:
    """Count a day of a year with no holiday data; warn the first time per year and process,
    so the gap is seen without flooding the log on every deadline computed."""
    WORKDAY_CALENDAR_UNCOVERED.labels(str(year)).inc()
    with _warned_lock:
        if year in _warned_years:
            return
        _warned_years.add(year)
    log.warning("no public-holiday data for %s: its days are counted Monday to Friday, so "
                "deadlines across its holidays come out early; add the State Council's %s "
                "notice to the file ECOURT_WORKDAY_CALENDAR_FILE names and restart (README, "
                "Working days)", year, year)


def is_workday(day: date) -> bool:
    calendar = _calendar
    if day.year not in calendar.years:
        _note_uncovered(day.year)
    if day in calendar.workdays:
        return True
    return day.weekday() < 5 and day not in calendar.holidays


def add_workdays(start: datetime, days: int) -> datetime:
    """The same Beijing time of day ``days`` working days after ``start`` (returned in UTC)."""
    local = start.astimezone(SHANGHAI)
    day, counted = local.date(), 0
    while counted < days:
        day += timedelta(days=1)
        if is_workday(day):
            counted += 1
    return datetime.combine(day, local.timetz()).astimezone(ZoneInfo("UTC"))


def local_date(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()


def start_of_local_day(day: date) -> datetime:
    """Midnight in Beijing opening ``day``, in UTC (16:00 UTC the day before)."""
    return datetime.combine(day, time(0), SHANGHAI).astimezone(ZoneInfo("UTC"))


def end_of_local_day(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), SHANGHAI)
