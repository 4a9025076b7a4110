"""matters' copy of the verified lawyers (from ``identity.lawyer.verified``): the clerk finds a
lawyer here to bind directly (律字 → the lawyer list), and a binding request needs one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_smorest.pagination import PaginationParameters
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from servicekit.db import Database
from servicekit.envelope import CloudEvent
from servicekit.paging import page_of
from servicekit.problems import Problem
from services.matters.access import is_staff_of
from services.matters.models import Lawyer


def on_lawyer_verified(session: Session, event: CloudEvent) -> None:
    """Insert or refresh the lawyer (a re-verification updates name, licence and firm)."""
    data = event.data
    raw = data.get("verified_at")
    verified_at = datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else event.time
    lawyer = session.get(Lawyer, data["account_id"], with_for_update=True)
    if lawyer is None:
        session.add(Lawyer(account_id=data["account_id"], name=data["name"],
                           license_no=data["license_no"], law_firm=data["law_firm"],
                           verified_at=verified_at))
        return
    lawyer.name, lawyer.license_no = data["name"], data["license_no"]
    lawyer.law_firm, lawyer.verified_at = data["law_firm"], verified_at


def search(db: Database, claims: dict[str, Any], q: str | None,
           page: PaginationParameters) -> list[Lawyer]:
    """Court staff search verified lawyers by name, law firm or licence number: one page."""
    if not is_staff_of(claims, claims.get("court") or ""):
        raise Problem(403, "forbidden", "court staff only")
    with db.transaction(reads_only=True) as session:
        query = select(Lawyer).order_by(Lawyer.name, Lawyer.account_id)
        if q:  # the words as typed: % and _ are characters here, not LIKE's wildcards
            query = query.where(or_(Lawyer.name.contains(q, autoescape=True),
                                    Lawyer.law_firm.contains(q, autoescape=True),
                                    Lawyer.license_no.contains(q, autoescape=True)))
        return list(page_of(session, query, page).scalars())


def verified(session: Session, account_id: str) -> Lawyer | None:
    return session.get(Lawyer, account_id)
