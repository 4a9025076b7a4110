"""The number of overdue applications is a metric, counted at scrape time per court."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import select

from servicekit import migrations
from servicekit.db import Database, utcnow
from servicekit.tables import outbox
from servicekit.workdays import SHANGHAI
from services.matters.app import SERVICE
from services.matters.domain import remaining_label
from services.matters.escalation import OverdueCollector, escalate_overdue
from services.matters.models import Application, Case


def _db(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrations.upgrade(SERVICE.migrations, url)
    return Database(url)


def _application(db: Database, deadline_delta: timedelta, status: str = "submitted", *,
                 deadline: datetime | None = None, level: int = 0) -> None:
    """An application of a new case, due ``deadline_delta`` from now (or at ``deadline``),
    urged ``level`` times."""
    now = utcnow()
    with db.transaction() as s:
        case = Case(id=str(uuid.uuid4()), case_number=f"(2021)粤01民初{uuid.uuid4().int % 9999}号",
                    court="粤01", court_name="广州市中级人民法院", cause="c", department="民一庭",
                    judge_account_id="j", clerk_account_id="c", created_at=now)
        s.add(case)
        s.flush()
        s.add(Application(id=str(uuid.uuid4()), case_id=case.id, court="粤01",
                          kind="effectiveness_certificate",
                          service_number=f"(2026)粤01文书第{uuid.uuid4().int % 99999}号",
                          applicant_account_id="a", applicant_name="甲", reason="r", use="u",
                          materials="[]", channel="电子诉讼", status=status,
                          stage="middle_office", deadline=deadline or now + deadline_delta,
                          submitted_at=now - timedelta(days=10), document_state="none",
                          escalation_level=level, version=1))


def test_overdue_gauge_counts_unfinished_applications_past_their_deadline(tmp_path: Path) -> None:
    db = _db(tmp_path)
    _application(db, -timedelta(days=2))
    _application(db, -timedelta(days=1))
    _application(db, timedelta(days=3))                      # not yet due
    _application(db, -timedelta(days=5), status="completed")  # finished late: not overdue
    registry = CollectorRegistry()
    registry.register(OverdueCollector(db))
    text = generate_latest(registry).decode()
    assert 'matters_overdue_applications{court="粤01"} 2.0' in text


def test_escalation_emits_one_event_per_level(tmp_path: Path) -> None:
    from sqlalchemy import select

    from servicekit.tables import outbox

    db = _db(tmp_path)
    _application(db, -timedelta(days=10))
    now = utcnow()
    assert [escalate_overdue(db, now) for _ in range(5)] == [1, 1, 1, 0, 0]
    with db.transaction() as s:
        types = s.scalars(select(outbox.c.body).where(
            outbox.c.type == "matters.application.overdue")).all()
    assert [f'"level":"{level}"' in body for level, body in
            zip(("handler", "division_head", "president"), types, strict=True)] == [True] * 3


def test_rows_waiting_for_a_later_rung_do_not_starve_newly_overdue_ones(tmp_path: Path) -> None:
    """Two applications urged once and not yet due for the division head (overdue 1 day) must
    not fill a batch of two and keep a newly overdue one from its first urging."""
    db = _db(tmp_path)
    _application(db, -timedelta(days=1))
    _application(db, -timedelta(days=1, hours=1))
    now = utcnow()
    assert escalate_overdue(db, now) == 2            # both reach "handler"
    _application(db, -timedelta(minutes=5))          # newly overdue
    assert escalate_overdue(db, utcnow(), batch=2) == 1
    with db.transaction() as s:
        from sqlalchemy import select
        levels = sorted(s.scalars(select(Application.escalation_level)).all())
    assert levels == [1, 1, 1]


def test_the_scheduler_urges_the_division_head_on_the_day_the_list_says_3(
        tmp_path: Path) -> None:
    """A deadline of 23:00 Beijing time, urged once: the division head is urged from the
    midnight the list turns to 超过3 (49 hours after the deadline), not 72 hours after it, and
    the SMS says 3 days (failed before: nothing moved at 02:00 three days on, and the SMS would
    have said 2 days while the list said 超过3)."""
    def beijing(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)

    db = _db(tmp_path)
    deadline = beijing("2026-03-02 23:00")
    _application(db, timedelta(0), deadline=deadline, level=1)
    assert remaining_label(deadline, beijing("2026-03-04 23:59:59"), False) == "超过2"
    assert escalate_overdue(db, beijing("2026-03-04 23:59:59")) == 0
    assert remaining_label(deadline, beijing("2026-03-05 02:00"), False) == "超过3"
    assert escalate_overdue(db, beijing("2026-03-05 02:00")) == 1
    with db.transaction() as s:
        [body] = s.scalars(select(outbox.c.body).where(
            outbox.c.type == "matters.application.overdue")).all()
    data = json.loads(body)["data"]
    assert (data["level"], data["days_overdue"]) == ("division_head", 3)
