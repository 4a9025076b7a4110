"""Working days of mainland China: weekends and public holidays off, make-up days on.

Service-level deadlines count working days. The holiday data is the State Council's annual
notice, kept as data (``HOLIDAYS``/``MAKEUP_WORKDAYS``); add each year when it is published.
Years not listed fall back to plain Monday–Friday. Times are converted to Asia/Shanghai before
counting, since a court's day is Beijing time.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _span(start: str, days: int) -> set[date]:
    first = date.fromisoformat(start)
    return {first + timedelta(days=i) for i in range(days)}


HOLIDAYS: set[date] = set().union(
    # 2022
    _span("2022-01-01", 3), _span("2022-01-31", 7), _span("2022-04-03", 3),
    _span("2022-04-30", 5), _span("2022-06-03", 3), _span("2022-09-10", 3),
    _span("2022-10-01", 7),
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
    "2024-02-04", "2024-02-18", "2024-04-07", "2024-04-28", "2024-05-11", "2024-09-14",
    "2024-09-29", "2024-10-12",
    "2025-01-26", "2025-02-08", "2025-04-27", "2025-09-28", "2025-10-11",
    "2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10",
)}


def is_workday(day: date) -> bool:
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
