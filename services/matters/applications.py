"""Applications made inside a case space: submitting, reading, and the court's to-do lists."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from servicekit.db import Database, utcnow
from servicekit.problems import Problem
from services.matters import events
from services.matters.access import (
    ensure_sees_application,
    ensure_sees_case,
    is_party_of,
    is_staff_of,
    not_found,
)
from services.matters.cases import load_case
from services.matters.domain import (
    BACK,
    COMPLETED,
    MIDDLE_OFFICE,
    NUMBER_WORD,
    SUBMITTED,
    deadline_for,
    service_number,
)
from services.matters.models import Application, Case, ServiceCounter


def next_service_number(session: Session, court: str, kind: str, now: datetime) -> str:
    """The court's next number for this year; the counter row is locked while it counts."""
    year, word = now.year, NUMBER_WORD[kind]
    for _ in range(3):
        counter = session.scalars(select(ServiceCounter).where(
            ServiceCounter.court == court, ServiceCounter.year == year,
            ServiceCounter.word == word).with_for_update()).first()
        if counter is not None:
            counter.last += 1
            return service_number(year, court, word, counter.last)
        try:
            with session.begin_nested():
                session.add(ServiceCounter(court=court, year=year, word=word, last=1))
            return service_number(year, court, word, 1)
        except IntegrityError:
            continue  # another request created it first: lock it and count on
    raise Problem(503, "busy", "could not allocate a service number; try again")


def submit(db: Database, claims: dict[str, Any], case_id: str,
           body: dict[str, Any]) -> Application:
    """A party of the case applies; the judge and clerk are told at once (via the event)."""
    with db.transaction() as session:
        case = load_case(session, case_id)
        if not is_party_of(claims, case):
            raise not_found()
        party = next(p for p in case.parties if p.account_id == claims["sub"])
        now = utcnow()
        app = Application(
            id=str(uuid.uuid4()), case_id=case.id, court=case.court, kind=body["kind"],
            service_number=next_service_number(session, case.court, body["kind"], now),
            applicant_account_id=claims["sub"], applicant_name=party.name,
            reason=body["reason"], use=body["use"],
            materials=json.dumps(body.get("materials") or [], ensure_ascii=False),
            channel=body.get("channel") or "电子诉讼", status=SUBMITTED, stage=MIDDLE_OFFICE,
            deadline=deadline_for(body["kind"], now), submitted_at=now,
            document_state="none", escalation_level=0, version=1)
        session.add(app)
        session.flush()
        events.submitted(session, app, case)
    return app


def get(db: Database, claims: dict[str, Any], application_id: str) -> tuple[Application, Case]:
    with db.transaction() as session:
        app = ensure_sees_application(claims, session.get(Application, application_id))
        return app, load_case(session, app.case_id)


def of_case(db: Database, claims: dict[str, Any], case_id: str) -> list[Application]:
    """Staff see every application of their court's case; a party sees their own."""
    with db.transaction() as session:
        case = ensure_sees_case(claims, session.get(Case, case_id))
        query = select(Application).where(Application.case_id == case.id)
        if not is_staff_of(claims, case.court):
            query = query.where(Application.applicant_account_id == claims["sub"])
        return list(session.scalars(query.order_by(Application.submitted_at)))


def todo(db: Database, claims: dict[str, Any], args: dict[str, Any]) -> list[tuple[Application,
                                                                                     Case]]:
    """The court's to-do list (middle office) or a judge's back-office list, filtered."""
    court = claims.get("court") or ""
    if not is_staff_of(claims, court):
        raise Problem(403, "forbidden", "court staff only")
    stage = args.get("stage") or MIDDLE_OFFICE
    with db.transaction() as session:
        query = (select(Application, Case).join(Case, Case.id == Application.case_id)
                 .where(Application.court == court, Application.stage == stage))
        if stage == BACK and "judge" in (claims.get("roles") or []):
            query = query.where(Case.judge_account_id == claims["sub"])
        if args.get("status"):
            query = query.where(Application.status == args["status"])
        elif not args.get("include_completed"):
            query = query.where(Application.status != COMPLETED)
        if args.get("kind"):
            query = query.where(Application.kind == args["kind"])
        if args.get("channel"):
            query = query.where(Application.channel == args["channel"])
        if args.get("q"):
            like = f"%{args['q']}%"
            query = query.where(Case.case_number.like(like)
                                | Application.service_number.like(like)
                                | Application.applicant_name.like(like))
        if args.get("overdue") is not None:
            now = utcnow()
            query = query.where((Application.deadline < now) if args["overdue"]
                                else (Application.deadline >= now))
        rows = session.execute(query.order_by(Application.deadline).limit(1000)).all()
        return [(a, c) for a, c in rows]
