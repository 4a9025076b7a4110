"""The escalation ladder, driven by a scheduler: an application past its deadline and still
unfinished — or a lawyer's binding request still pending past its deadline — is urged one level
at a time — handler, then division head, then court president — each level once. The embedded
suite runs the scheduler as a thread; a distributed deployment runs ``ecourt scheduler`` as its
own process (several replicas are safe: rows are locked).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import ColumnElement, and_, func, or_, select

from servicekit.db import Database, utcnow
from services.matters import events
from services.matters.domain import (
    COMPLETED,
    LADDER,
    PENDING,
    days_overdue,
    next_escalation,
    overdue_cutoff,
)
from services.matters.models import Application, Binding, Case

log = logging.getLogger(__name__)


def escalate_overdue(db: Database, now: datetime | None = None, batch: int = 200) -> int:
    """Advance every overdue application and pending binding request by at most one level;
    returns how many moved. The one entry point the scheduler (and tests) call."""
    now = now or utcnow()
    moved = _applications(db, now, batch) + _bindings(db, now, batch)
    if moved:
        log.info("escalated %s overdue item(s)", moved)
    return moved


def _due(level: Any, deadline: Any, now: datetime) -> ColumnElement[bool]:
    """In SQL, what ``next_escalation`` decides: the next rung's day has come (in Beijing
    calendar days, as ``overdue_cutoff`` puts ``days_overdue``). Selecting only these keeps rows
    waiting for a later rung out of the batch — else a full batch of them (oldest deadlines
    first) starved the newly overdue ones, whose first urging never went."""
    return or_(*(and_(level == i, deadline < overdue_cutoff(days, now))
                 for i, (_, days) in enumerate(LADDER)))


def _applications(db: Database, now: datetime, batch: int) -> int:
    moved = 0
    with db.transaction() as session:
        rows = session.execute(
            select(Application, Case).join(Case, Case.id == Application.case_id)
            .where(Application.status != COMPLETED, Application.deadline < now,
                   Application.escalation_level < len(LADDER),
                   _due(Application.escalation_level, Application.deadline, now))
            .order_by(Application.deadline).limit(batch)
            .with_for_update(of=Application, skip_locked=True)).all()
        for app, case in rows:
            level = next_escalation(app.escalation_level, app.deadline, now)
            if level is None:
                continue
            events.overdue(session, app, case, level, days_overdue(app.deadline, now))
            app.escalation_level += 1
            moved += 1
    return moved


def _bindings(db: Database, now: datetime, batch: int) -> int:
    moved = 0
    with db.transaction() as session:
        rows = session.execute(
            select(Binding, Case).join(Case, Case.id == Binding.case_id)
            .where(Binding.status == PENDING, Binding.deadline < now,
                   Binding.escalation_level < len(LADDER),
                   _due(Binding.escalation_level, Binding.deadline, now))
            .order_by(Binding.deadline).limit(batch)
            .with_for_update(of=Binding, skip_locked=True)).all()
        for binding, case in rows:
            level = next_escalation(binding.escalation_level, binding.deadline, now)
            if level is None:
                continue
            events.binding_overdue(session, binding, case, level,
                                   days_overdue(binding.deadline, now))
            binding.escalation_level += 1
            moved += 1
    return moved


class Scheduler:
    """Runs ``escalate_overdue`` every ``interval`` seconds until stopped."""

    def __init__(self, db: Database, interval: float = 60.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.interval = interval
        self.clock = clock

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                escalate_overdue(self.db, self.clock())
            except Exception:
                log.exception("escalation run failed; trying again next interval")
            stop.wait(self.interval)


class OverdueCollector:
    """``matters_overdue_applications``: unfinished applications past their deadline."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self):  # type: ignore[no-untyped-def]
        gauge = GaugeMetricFamily("matters_overdue_applications",
                                  "Unfinished applications past their deadline", labels=["court"])
        with self.db.transaction() as session:
            rows = session.execute(
                select(Application.court, func.count()).where(
                    Application.status != COMPLETED, Application.deadline < utcnow())
                .group_by(Application.court)).all()
            pending = session.execute(
                select(Binding.court, func.count()).where(
                    Binding.status == PENDING, Binding.deadline < utcnow())
                .group_by(Binding.court)).all()
        for court, count in rows:
            gauge.add_metric([court], count)
        yield gauge
        bindings = GaugeMetricFamily("matters_overdue_bindings",
                                     "Lawyer binding requests pending past their deadline",
                                     labels=["court"])
        for court, count in pending:
            bindings.add_metric([court], count)
        yield bindings
