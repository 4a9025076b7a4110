"""The events matters publishes, built in one place so every payload matches its contract
(contracts/events/matters.*.json)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from servicekit.outbox import emit
from services.matters.models import Application, Case

SOURCE = "/matters"


def _common(app: Application, case: Case) -> dict[str, Any]:
    return {"application_id": app.id, "service_number": app.service_number,
            "case_id": case.id, "case_number": case.case_number, "court": case.court,
            "court_name": case.court_name, "kind": app.kind}


def submitted(session: Session, app: Application, case: Case) -> None:
    staff = [a for a in (case.judge_account_id, case.clerk_account_id) if a]
    emit(session, "matters.application.submitted", {
        **_common(app, case), "applicant_account_id": app.applicant_account_id,
        "notify_account_ids": staff, "deadline": app.deadline.isoformat(),
        "submitted_at": app.submitted_at.isoformat()}, source=SOURCE, subject=app.id)


def transferred(session: Session, app: Application, case: Case) -> None:
    emit(session, "matters.application.transferred", {
        **_common(app, case), "judge_account_id": case.judge_account_id,
        "notify_account_ids": [a for a in (case.judge_account_id, case.clerk_account_id) if a]},
        source=SOURCE, subject=app.id)


def certificate_requested(session: Session, app: Application, case: Case) -> str:
    """Ask documents for the certificate; a new request id for every attempt."""
    request_id = str(uuid.uuid4())
    judgment: dict[str, str] = {}
    if case.judgment_title:
        judgment["title"] = case.judgment_title
    if case.judgment_date:
        judgment["decided_on"] = case.judgment_date.isoformat()
    emit(session, "matters.certificate.requested", {
        "request_id": request_id, "application_id": app.id, "case_id": case.id,
        "case_number": case.case_number, "court": case.court, "court_name": case.court_name,
        "cause": case.cause,
        "parties": [{"name": p.name, "role": p.role} for p in case.parties],
        "judgment": judgment, "effective_date": case.effective_date.isoformat(),  # type: ignore[union-attr]
        "service_number": app.service_number,
        "applicant_account_id": app.applicant_account_id}, source=SOURCE, subject=app.id)
    return request_id


def completed(session: Session, app: Application, case: Case) -> None:
    emit(session, "matters.application.completed", {
        **_common(app, case), "applicant_account_id": app.applicant_account_id,
        "document_id": app.document_id, "viewer_account_ids": [app.applicant_account_id],
        "completed_at": app.published_at.isoformat()},  # type: ignore[union-attr]
        source=SOURCE, subject=app.id)


def overdue(session: Session, app: Application, case: Case, level: str,
            days_overdue: int) -> None:
    handlers = ([case.judge_account_id] if app.stage == "back_office"
                else [case.judge_account_id, case.clerk_account_id])
    emit(session, "matters.application.overdue", {
        **_common(app, case), "department": case.department, "level": level,
        "handler_account_ids": [a for a in handlers if a], "days_overdue": days_overdue,
        "deadline": app.deadline.isoformat()}, source=SOURCE, subject=app.id)
