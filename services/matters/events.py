"""The events matters publishes, built in one place so every payload matches its contract
(contracts/events/matters.*.json)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from servicekit.outbox import emit
from services.matters.access import party_of_application
from services.matters.domain import LAWYER_BINDING
from services.matters.models import Application, Binding, Case

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


def viewers(app: Application, case: Case) -> list[str]:
    """Who may download the published document: the applicant, the party's own account, and
    the lawyers bound to that party (approved bindings) — once each, in that order."""
    party_id = party_of_application(app, case)
    party_accounts = [p.account_id for p in case.parties if p.id == party_id and p.account_id]
    lawyers = [b.lawyer_account_id for b in case.approved_bindings if b.party_id == party_id]
    return list(dict.fromkeys([app.applicant_account_id, *party_accounts, *lawyers]))


def completed(session: Session, app: Application, case: Case) -> None:
    emit(session, "matters.application.completed", {
        **_common(app, case), "applicant_account_id": app.applicant_account_id,
        "document_id": app.document_id, "viewer_account_ids": viewers(app, case),
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


def _staff(case: Case) -> list[str]:
    return [a for a in (case.judge_account_id, case.clerk_account_id) if a]


def _binding(binding: Binding, case: Case) -> dict[str, Any]:
    return {"binding_id": binding.id, "service_number": binding.service_number,
            "case_id": case.id, "case_number": case.case_number, "court": case.court,
            "court_name": case.court_name, "lawyer_account_id": binding.lawyer_account_id,
            "lawyer_name": binding.lawyer_name, "party_name": binding.party_name}


def binding_requested(session: Session, binding: Binding, case: Case) -> None:
    """Tell the presiding judge and the clerk at once (12368 SMS + to-do notice)."""
    emit(session, "matters.binding.requested", {
        **_binding(binding, case), "law_firm": binding.law_firm,
        "notify_account_ids": _staff(case), "deadline": binding.deadline.isoformat(),
        "requested_at": binding.requested_at.isoformat()}, source=SOURCE, subject=binding.id)


def _party_account(binding: Binding, case: Case) -> str | None:
    return next((p.account_id for p in case.parties if p.id == binding.party_id), None)


def binding_approved(session: Session, binding: Binding, case: Case) -> None:
    emit(session, "matters.binding.approved", {
        **_binding(binding, case), "party_account_id": _party_account(binding, case),
        "method": binding.source, "decided_at": binding.decided_at.isoformat()},  # type: ignore[union-attr]
        source=SOURCE, subject=binding.id)


def binding_rejected(session: Session, binding: Binding, case: Case) -> None:
    emit(session, "matters.binding.rejected", {
        **_binding(binding, case), "party_account_id": _party_account(binding, case),
        "reason": binding.reason, "decided_at": binding.decided_at.isoformat()},  # type: ignore[union-attr]
        source=SOURCE, subject=binding.id)


def binding_overdue(session: Session, binding: Binding, case: Case, level: str,
                    days_overdue: int) -> None:
    """A pending binding request past its deadline: the same ladder and event as an
    application's, with kind ``lawyer_binding`` (``application_id`` carries the binding id)."""
    emit(session, "matters.application.overdue", {
        "application_id": binding.id, "binding_id": binding.id,
        "service_number": binding.service_number, "case_id": case.id,
        "case_number": case.case_number, "court": case.court, "court_name": case.court_name,
        "kind": LAWYER_BINDING, "department": case.department, "level": level,
        "handler_account_ids": _staff(case), "days_overdue": days_overdue,
        "deadline": binding.deadline.isoformat()}, source=SOURCE, subject=binding.id)
