"""Cases as they arrive from the court's trial system (a court-staff API; later the filing
service's docketing event too)."""

from __future__ import annotations

import uuid
from typing import Any

from flask_smorest.pagination import PaginationParameters
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from servicekit.db import Database, utcnow
from servicekit.ids import new_id
from servicekit.paging import page_of
from servicekit.problems import Problem
from services.matters.access import ensure_sees_case, ensure_staff_of, is_lawyer, is_staff_of
from services.matters.case_parties import check_party_accounts
from services.matters.case_staff import StaffDirectory, check_named_staff, named_accounts
from services.matters.domain import APPROVED, canonical_case_number, case_number_error
from services.matters.models import Binding, Case, CaseParty


def register_case(db: Database, claims: dict[str, Any], body: dict[str, Any],
                  staff: StaffDirectory) -> Case:
    """A new case, once its judge and clerk are known to be active staff of its court and its
    parties' accounts to be theirs (asked of ``staff`` in one call before the transaction: no
    lock is held across it)."""
    ensure_staff_of(claims, body["court"])
    body = {**body, "case_number": canonical_case_number(body["case_number"])}
    wrong = case_number_error(body["case_number"], utcnow())
    if wrong:
        raise Problem(422, "validation-error", "the request is invalid",
                      errors={"json": {"case_number": [wrong]}})
    found = named_accounts(staff, body)
    check_named_staff(found, body)
    check_party_accounts(found, body)
    try:
        with db.transaction() as session:
            if session.scalar(select(Case.id).where(Case.case_number == body["case_number"])):
                raise _case_exists()
            case = new_case(body)
            session.add(case)
    except IntegrityError as exc:
        if "case_number" not in str(exc.orig):
            raise
        # registered by another request between the look-up and the commit (the trial system
        # sending it twice at once): the unique key decides, with the look-up's answer
        raise _case_exists() from exc
    return case


def new_case(body: dict[str, Any]) -> Case:
    """The case and its parties a registration's ``body`` describes (not yet added)."""
    judgment = body.get("judgment") or {}
    case = Case(id=new_id(), case_number=body["case_number"],
                court=body["court"], court_name=body["court_name"], cause=body["cause"],
                department=body["department"], judge_account_id=body["judge_account_id"],
                clerk_account_id=body.get("clerk_account_id"),
                judgment_title=judgment.get("title"),
                judgment_date=judgment.get("decided_on"),
                effective_date=body.get("effective_date"), created_at=utcnow())
    case.parties = [CaseParty(id=str(uuid.uuid4()), position=i, name=p["name"],
                              role=p["role"], account_id=p.get("account_id"))
                    for i, p in enumerate(body["parties"])]
    return case


def _case_exists() -> Problem:
    return Problem(409, "case-exists", "a case with this number exists")


def get_case(db: Database, claims: dict[str, Any], case_id: str) -> Case:
    """The case, to those who may see it. Read in a reading transaction: on SQLite it takes
    no write lock (it neither waits for the service's writes nor holds them up); a refusal's
    audit entry is written by the web layer in a transaction of its own."""
    with db.transaction(reads_only=True) as session:
        return ensure_sees_case(claims, session.get(Case, case_id))


def list_cases(db: Database, claims: dict[str, Any], page: PaginationParameters) -> list[Case]:
    """A party's own cases, plus a lawyer's cases through approved bindings; a staff member's
    court's cases. One page, newest first, the total counted under the same rule."""
    with db.transaction(reads_only=True) as session:
        query = select(Case).order_by(Case.created_at.desc(), Case.id.desc())
        court = claims.get("court")
        if court and is_staff_of(claims, court):
            query = query.where(Case.court == court)
        else:
            sub = claims.get("sub")
            mine = select(CaseParty.case_id).where(CaseParty.account_id == sub)
            if is_lawyer(claims):
                mine = mine.union(select(Binding.case_id).where(
                    Binding.lawyer_account_id == sub, Binding.status == APPROVED))
            query = query.where(Case.id.in_(mine))
        return list(page_of(session, query, page).scalars())


def load_case(session: Session, case_id: str) -> Case:
    case = session.get(Case, case_id)
    if case is None:
        raise Problem(404, "not-found", "no such case")
    return case
