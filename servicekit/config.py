"""Settings from environment variables, with safe defaults for the embedded tier.

Every process of the suite reads the same names, so one docker-compose file, one Kubernetes
manifest and one laptop run all configure a service the same way:

* ``ECOURT_DATA_DIR``           folder for the embedded tier's SQLite files (``./data``)
* ``<SERVICE>_DATABASE_URL``    e.g. ``IDENTITY_DATABASE_URL=postgresql+psycopg://…/identity``
* ``ECOURT_BROKER_URL``         ``memory://`` (embedded) or ``amqp://guest:guest@host:5672//``
* ``ECOURT_EXCHANGE``           the durable topic exchange events are published to
* ``ECOURT_SERVICE_SECRET``     shared secret for service-to-service internal calls
  (or ``ECOURT_SERVICE_SECRET_FILE``, a mounted secret file)
* ``ECOURT_MAX_ATTEMPTS``       handler attempts before an event goes to the dead-letter queue
* ``ECOURT_WORKDAY_CALENDAR_FILE``  a JSON file of the State Council's holiday arrangements
  for years the ``chinese-calendar`` package does not know (or gets wrong); see
  ``servicekit/workdays.py``
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import NamedTuple

from servicekit.retention import Retention

DEFAULT_EXCHANGE = "ecourt.events"


class ConfigError(ValueError):
    """A setting in the environment that cannot be used; the message names it and says why
    (the CLI prints it and exits 2 instead of a traceback)."""


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    """An integer setting; a value that is not one (or below ``minimum``) is a ConfigError."""
    raw = env(name, str(default)).strip() or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    return value


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    """A number setting; a value that is not a finite number (or below ``minimum``) is a
    ConfigError."""
    raw = env(name, str(default)).strip() or str(default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, not {raw!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, not {value:g}")
    return value


def env_retention(name: str, default: float, floor: float) -> float:
    """A retention (0: keep for ever). A positive value below ``floor`` is a ConfigError: the
    rows it prunes are what makes a retry or a redelivery harmless, and pruning them while a
    retry can still come would let it take effect twice."""
    value = env_float(name, default, minimum=0)
    if 0 < value < floor:
        raise ConfigError(f"{name} must be 0 (keep for ever) or at least {floor:g}, not "
                          f"{value:g}: a retry or a redelivery could come after its record "
                          "was pruned, and take effect twice")
    return value


def read_file(name: str, path: str) -> str:
    """The text of the file the setting ``name`` points at; one that cannot be read (missing,
    not UTF-8) is a ConfigError naming the setting."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}={path} cannot be read: {exc}") from None


def secret(name: str, default: str) -> str:
    """A secret from ``NAME_FILE`` (a mounted file) or ``NAME``, else the dev default."""
    path = env(f"{name}_FILE")
    if path:
        return read_file(f"{name}_FILE", path).strip()
    return env(name, default).strip() or default


WORKDAY_CALENDAR_FILE = "ECOURT_WORKDAY_CALENDAR_FILE"
#: four ASCII digits, whole (``$`` would take "2027\n"; ``\d`` alone takes "２０２７")
_YEAR = re.compile(r"[0-9]{4}")


class CalendarYear(NamedTuple):
    """One year of the State Council's holiday arrangement: the days off (weekend days among
    them or not) and the weekend days worked instead (调休, make-up working days)."""

    holidays: frozenset[date]
    workdays: frozenset[date]


def workday_calendar(name: str = WORKDAY_CALENDAR_FILE) -> dict[int, CalendarYear] | None:
    """The court administrator's years from the JSON file ``name`` points at, None when it is
    not set. Read and checked whole at a process's start, so a mistake stops the process with
    a ConfigError naming the setting instead of moving deadlines quietly."""
    path = env(name).strip()
    if not path:
        return None
    text = read_file(name, path)
    try:
        return calendar_years(json.loads(text))
    except ValueError as exc:  # json.JSONDecodeError is one
        raise ConfigError(f"{name}={path}: {exc}") from None


def calendar_years(data: object) -> dict[int, CalendarYear]:
    """``{"2027": {"holidays": ["2027-01-01", ...], "workdays": ["2027-02-06", ...]}}`` as
    CalendarYears; ValueError says what is wrong. Each date lies in the year it is listed
    under, no date is both off and worked, a make-up working day is a Saturday or a Sunday
    (a weekday is worked anyway: listing one is a slip), and a year has a day off (a year
    listed with none would count as covered while knowing nothing)."""
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object of years, e.g. {\"2027\": {\"holidays\": "
                         "[...], \"workdays\": [...]}}")
    return {_year(key): _calendar_year(_year(key), value) for key, value in data.items()}


def _year(key: str) -> int:
    if not _YEAR.fullmatch(key):
        raise ValueError(f"{key!r} is not a year (four digits, e.g. \"2027\")")
    return int(key)


def _calendar_year(year: int, value: object) -> CalendarYear:
    if not isinstance(value, dict) or set(value) != {"holidays", "workdays"}:
        raise ValueError(f"{year} must be an object with exactly \"holidays\" and "
                         "\"workdays\", lists of dates")
    holidays = _dates(year, "holidays", value["holidays"])
    workdays = _dates(year, "workdays", value["workdays"])
    if not holidays:
        raise ValueError(f"{year} lists no holidays")
    if both := sorted(holidays & workdays):
        raise ValueError(f"{year}: {both[0]} is listed both as a holiday and as a workday")
    if weekdays := sorted(day for day in workdays if day.weekday() < 5):
        raise ValueError(f"{year}: workday {weekdays[0]} is a weekday; the workdays are the "
                         "Saturdays and Sundays worked instead of a holiday")
    return CalendarYear(holidays, workdays)


def _dates(year: int, key: str, values: object) -> frozenset[date]:
    if not isinstance(values, list):
        raise ValueError(f"{year}.{key} must be a list of dates (\"YYYY-MM-DD\")")
    days = set()
    for value in values:
        try:
            day = date.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            day = None
        if day is None or len(value) != 10:
            raise ValueError(f"{year}.{key}: {value!r} is not a date (\"YYYY-MM-DD\")")
        if day.year != year:
            raise ValueError(f"{year}.{key}: {value} is not in {year}")
        days.add(day)
    return frozenset(days)


def data_dir() -> Path:
    path = Path(env("ECOURT_DATA_DIR", "data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url(service: str) -> str:
    explicit = env(f"{service.upper()}_DATABASE_URL")
    if explicit:
        return explicit
    return f"sqlite:///{data_dir() / (service + '.db')}"


@dataclass(frozen=True)
class Settings:
    """What one service process needs to know about the world outside it."""

    service: str
    database_url: str
    broker_url: str = "memory://"
    exchange: str = DEFAULT_EXCHANGE
    service_secret: str = "embedded-dev-secret"  # noqa: S105 - dev default, overridden in deploy
    max_attempts: int = 5
    retry_base_seconds: float = 1.0
    #: threads that handle a consumer's batches, split by subject (PostgreSQL only)
    consumer_workers: int = 1
    #: days a sent outbox row is kept before the relay deletes it (0: keep every row)
    outbox_retention_days: float = 7.0
    #: days a handled event's id is kept in the inbox, to catch duplicates (0: forever)
    inbox_retention_days: float = 30.0
    #: hours an Idempotency-Key and its stored answer are kept (0: forever)
    idempotency_key_hours: float = 24.0
    #: the administrator's holiday years (``ECOURT_WORKDAY_CALENDAR_FILE``); None: no file,
    #: the ``chinese-calendar`` package's years alone (servicekit.workdays)
    workday_calendar: dict[int, CalendarYear] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def retention(self) -> Retention:
        return Retention(outbox=_days(self.outbox_retention_days),
                         inbox=_days(self.inbox_retention_days),
                         idempotency_keys=_days(self.idempotency_key_hours / 24))

    @property
    def is_memory_bus(self) -> bool:
        return self.broker_url.startswith("memory")

    @classmethod
    def from_env(cls, service: str, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "service": service,
            "database_url": database_url(service),
            "broker_url": env("ECOURT_BROKER_URL", "memory://"),
            "exchange": env("ECOURT_EXCHANGE", DEFAULT_EXCHANGE),
            "service_secret": secret("ECOURT_SERVICE_SECRET", "embedded-dev-secret"),
            "max_attempts": env_int("ECOURT_MAX_ATTEMPTS", 5, minimum=1),
            "retry_base_seconds": env_float("ECOURT_RETRY_BASE_SECONDS", 1.0, minimum=0),
            "consumer_workers": env_int("ECOURT_CONSUMER_WORKERS", 1, minimum=1),
            "outbox_retention_days": env_float("ECOURT_OUTBOX_RETENTION_DAYS", 7, minimum=0),
            # an event is redelivered within hours (retries wait an hour at most); a day is
            # the least an inbox may remember it
            "inbox_retention_days": env_retention("ECOURT_INBOX_RETENTION_DAYS", 30, floor=1),
            # a key outlives any request that holds it (IN_PROGRESS_FOR, 5 minutes) and a
            # client's retries: an hour at the least
            "idempotency_key_hours": env_retention("ECOURT_IDEMPOTENCY_KEY_HOURS", 24,
                                                   floor=1),
            "workday_calendar": workday_calendar(),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def _days(days: float) -> timedelta | None:
    """``days`` as a retention; zero or less keeps rows forever."""
    return timedelta(days=days) if days > 0 else None
