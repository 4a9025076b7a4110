"""Working days of mainland China: weekends and public holidays off, make-up days on.

Service-level deadlines count working days. The holiday data is the State Council's annual
notice (国务院办公厅关于某年部分节假日安排的通知), kept as data (``HOLIDAYS``,
``MAKEUP_WORKDAYS`` — the 调休 weekend days worked — and ``COVERED_YEARS``); add each year when
it is published, usually in November.

A day in a year not in ``COVERED_YEARS`` is counted plain Monday–Friday: its public holidays
are working days and its make-up days are off, so a deadline across them comes out early. That
is still an answer (a request never fails over it), but never a silent one: the first such day
of each year logs a WARNING naming the year, once per process, and every such day counts in
``workday_calendar_uncovered_days_total{year}`` (alert on it being above 0). Times are
converted to Asia/Shanghai before counting, since a court's day is Beijing time.
"""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from servicekit.metrics import WORKDAY_CALENDAR_UNCOVERED

SHANGHAI = ZoneInfo("Asia/Shanghai")
log = logging.getLogger(__name__)


def _span(start: str, days: int) -> set[date]:
    first = date.fromisoformat(start)
    return {first + timedelta(days=i) for i in range(days)}


HOLIDAYS: set[date] = set().union(
    # 2022
    _span("2022-01-01", 3), _span("2022-01-31", 7), _span("2022-04-03", 3),
    _span("2022-04-30", 5), _span("2022-06-03", 3), _span("2022-09-10", 3),
    _span("2022-10-01", 7),
    # 2023 (New Year's Day holiday from 2022-12-31)
    _span("2022-12-31", 3), _span("2023-01-21", 7), _span("2023-04-05", 1),
    _span("2023-04-29", 5), _span("2023-06-22", 3), _span("2023-09-29", 8),
    # 2024
    _span("2024-01-01", 1), _span("2024-02-10", 8), _span("2024-04-04", 3),
    _span("2024-05-01", 5), _span("2024-06-10", 1), _span("2024-09-15", 3),
    _span("2024-10-01", 7),
    # 2025
    _span("2025-01-01", 1), _span("2025-01-28", 8), _span("2025-04-04", 3),
    _span("2025-05-01", 5), _span("2025-05-31", 3), _span("2025-10-01", 8),
    # 2026
    _span("2026-01-01", 3), _span("2026-02-15", 9), _span("2026-04-04", 3),
    _span("2026-05-01", 5), _span("2026-06-19", 3), _span("2026-09-25", 3),
    _span("2026-10-01", 7),
)
MAKEUP_WORKDAYS: set[date] = {date.fromisoformat(d) for d in (
    "2022-01-29", "2022-01-30", "2022-04-02", "2022-04-24", "2022-05-07", "2022-10-08",
    "2022-10-09",
    "2023-01-28", "2023-01-29", "2023-04-23", "2023-05-06", "2023-06-25", "2023-10-07",
    "2023-10-08",
    "2024-02-04", "2024-02-18", "2024-04-07", "2024-04-28", "2024-05-11", "2024-09-14",
    "2024-09-29", "2024-10-12",
    "2025-01-26", "2025-02-08", "2025-04-27", "2025-09-28", "2025-10-11",
    "2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10",
)}


#: the years whose notice is in the lists above; any other year counts Monday–Friday
COVERED_YEARS = frozenset({2022, 2023, 2024, 2025, 2026})

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
                "notice to servicekit/workdays.py", year, year)


def is_workday(day: date) -> bool:
    if day.year not in COVERED_YEARS:
        _note_uncovered(day.year)
    if day in MAKEUP_WORKDAYS:
        return True
    return day.weekday() < 5 and day not in HOLIDAYS


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
