"""Applications made inside a case space: submitting, reading, and the court's to-do lists."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

from flask_smorest.pagination import PaginationParameters
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from servicekit import audit
from servicekit.db import Database, legal_now, utcnow
from servicekit.ids import new_id
from servicekit.paging import count_of, page_of
from servicekit.problems import Problem
from servicekit.workdays import local_date
from services.matters import events
from services.matters.access import (
    acting_parties,
    applications_seen,
    ensure_sees_application,
    ensure_sees_case,
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
    canonical_case_number,
    deadline_for,
    service_number,
)
from services.matters.models import Application, Case, CaseParty, ServiceCounter


def next_service_number(session: Session, court: str, kind: str, now: datetime) -> str:
    """The court's next number for this year — the year in Beijing time, the court's calendar
    (``now`` is UTC: 1 January 01:00 in Beijing is still 31 December in UTC); the counter row
    is locked while it counts."""
    year, word = local_date(now).year, NUMBER_WORD[kind]
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
           body: dict[str, Any]) -> tuple[Application, Case]:
    """A party of the case applies, or a lawyer bound to a party applies on their behalf (the
    applicant is the party; ``submitted_by`` records the lawyer). The judge and clerk are told
    at once (via the event). Returns the application and its case as the transaction left
    them, so the answer needs no second trip to the database: a database lost after the
    commit must not turn a filed application into an error."""
    with db.transaction() as session:
        case = load_case(session, case_id)
        party = _acting_for(claims, case, body)
        now = legal_now()
        app = Application(
            id=new_id(), case_id=case.id, court=case.court, kind=body["kind"],
            service_number=next_service_number(session, case.court, body["kind"], now),
            # the account told of the outcome: the party's own, else the lawyer who applied
            applicant_account_id=party.account_id or claims["sub"], applicant_name=party.name,
            party_id=party.id, submitted_by_account_id=claims["sub"],
            reason=body["reason"], use=body["use"],
            materials=json.dumps(body.get("materials") or [], ensure_ascii=False),
            channel=body.get("channel") or "电子诉讼", status=SUBMITTED, stage=MIDDLE_OFFICE,
            deadline=deadline_for(body["kind"], now), submitted_at=now,
            document_state="none", escalation_level=0, version=1)
        session.add(app)
        session.flush()
        events.submitted(session, app, case)
    return app, case


def _acting_for(claims: dict[str, Any], case: Case, body: dict[str, Any]) -> CaseParty:
    """The party the caller applies for: themself, or the one party they represent. A lawyer
    bound to several parties of the case names one — by ``party_name``, or by ``party_id``
    when two of them share a name (two plaintiffs both 张三): the name alone is then a 422,
    never the first of them."""
    parties = list({p.id: p for p in acting_parties(claims, case)}.values())
    if not parties:
        audit.note_denied(f"case:{case.id}")
        raise not_found()
    if body.get("party_id"):
        named = [p for p in parties if p.id == body["party_id"]]
        field = "party_id"
    elif body.get("party_name"):
        named = [p for p in parties if p.name == body["party_name"]]
        field = "party_name"
    elif len(parties) > 1:
        raise Problem(422, "validation-error", "the request is invalid",
                      errors={"json": {"party_name": ["name the party you apply for"]}})
    else:
        return parties[0]
    if not named:
        raise Problem(422, "validation-error", "the request is invalid",
                      errors={"json": {field: ["you do not act for this party"]}})
    if len(named) > 1:
        raise Problem(422, "validation-error", "the request is invalid", errors={"json": {
            "party_name": [f"{len(named)} parties you act for have this name: name the one "
                           "you apply for with party_id"]}})
    return named[0]


def get(db: Database, claims: dict[str, Any], application_id: str) -> tuple[Application, Case]:
    with db.transaction(reads_only=True) as session:
        app = session.get(Application, application_id)
        case = session.get(Case, app.case_id) if app is not None else None
        ensure_sees_application(claims, app, case)
        return app, case  # type: ignore[return-value]


def of_case(db: Database, claims: dict[str, Any], case_id: str,
            page: PaginationParameters) -> tuple[Case, list[Application]]:
    """Staff see every application of their court's case; a party sees their own party's, a
    bound lawyer those of the parties they represent. One page, oldest first, with the case."""
    with db.transaction(reads_only=True) as session:
        case = ensure_sees_case(claims, session.get(Case, case_id))
        query = (select(Application).where(Application.case_id == case.id,
                                           applications_seen(claims, case))
                 .order_by(Application.submitted_at, Application.id))
        return case, list(page_of(session, query, page).scalars())


def todo(db: Database, claims: dict[str, Any], args: dict[str, Any],
         page: PaginationParameters) -> list[tuple[Application, Case]]:
    """The court's to-do list (middle office) or a judge's back-office list, filtered: one
    page, the nearest deadline first."""
    query = _todo_query(claims, args)
    with db.transaction(reads_only=True) as session:
        return [(a, c) for a, c in page_of(session, query, page)]


#: the most rows one export of the to-do list gives; a list the filters leave longer is
#: refused (422 export-too-large) before a byte is sent, so one click cannot hold a database
#: connection and a worker for minutes: the staff narrow the filters (status, channel, q ...)
MAX_EXPORT_ROWS = 50_000
#: rows read from the database at a time while an export streams
EXPORT_CHUNK = 500


def todo_export(db: Database, claims: dict[str, Any],
                args: dict[str, Any]) -> Iterator[tuple[Application, Case]]:
    """导出: every row of the to-do list the filters select (the list's access rules and
    order), for streaming. Counted first: more than ``MAX_EXPORT_ROWS`` raises a 422 problem
    here, before the caller sends anything; then read ``EXPORT_CHUNK`` rows at a time, in the
    one transaction that counted them, which stays open until the iterator is exhausted or
    closed (the WSGI server closes it when the client goes away)."""
    rows = _export_rows(db, _todo_query(claims, args))
    next(rows)  # the count: raises the 422 now, not halfway through the download
    return cast(Iterator[tuple[Application, Case]], rows)  # no None after the first


def _export_rows(db: Database,
                 query: Select[Any]) -> Iterator[tuple[Application, Case] | None]:
    """Yields None once the rows are counted and within the bound, then the rows. The count
    and the rows share one snapshot (a reading transaction), so the export holds exactly the
    rows it counted; on SQLite such a transaction takes no write lock either, so a slow
    download holds up no write of the service."""
    with db.transaction(reads_only=True) as session:
        total = count_of(session, query)
        if total > MAX_EXPORT_ROWS:
            raise Problem(422, "export-too-large",
                          f"the filters select {total} rows; an export gives at most "
                          f"{MAX_EXPORT_ROWS}: narrow the filters and export again",
                          total=total, limit=MAX_EXPORT_ROWS)
        yield None
        yield from session.execute(query.execution_options(yield_per=EXPORT_CHUNK))


def _todo_query(claims: dict[str, Any], args: dict[str, Any]) -> Select[Any]:
    """The to-do list's rows as a query, the nearest deadline first (then the id, so a page
    boundary never repeats or skips a row): the caller's court only, a judge's back office
    only their own cases, then the filters. Court staff only (403)."""
    court = claims.get("court") or ""
    if not is_staff_of(claims, court):
        raise Problem(403, "forbidden", "court staff only")
    stage = args.get("stage") or MIDDLE_OFFICE
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
        # the words as typed: % and _ are characters here, not LIKE's wildcards; a case number
        # is kept in plain brackets, so （2021）粤01 finds (2021)粤01
        q = args["q"]
        query = query.where(
            Case.case_number.contains(canonical_case_number(q), autoescape=True)
            | Application.service_number.contains(q, autoescape=True)
            | Application.applicant_name.contains(q, autoescape=True))
    if args.get("overdue") is not None:
        now = utcnow()
        query = query.where((Application.deadline < now) if args["overdue"]
                            else (Application.deadline >= now))
    return query.order_by(Application.deadline, Application.id)
