"""Lawyer–case binding (律师案件绑定) [judge-side manual §2; 穗中法函〔2023〕32号 §1].

* A verified lawyer asks to be bound to a named party of a case, with the letter of
  authorisation (授权委托书) attached: a pending request with a service number
  (``(2026)粤01绑定第N号``) and a deadline of 3 working days; the presiding judge and the clerk
  are told at once (``matters.binding.requested``) and see it in their to-do.
* The case's presiding judge or clerk approves or rejects it (a reason is required); a pending
  request past its deadline climbs the escalation ladder like an application.
* The case's clerk may also bind a verified lawyer directly (the letter reached the panel on
  paper) [004 §1: 合议庭收到授权委托书材料后，由书记员…录入]: the same relation to the case as
  deciding a request; another clerk of the court gets the same 403.
* Only an approved binding lets a lawyer see the case (see ``access.py``).

The answer to an unknown case number and to a party name not in the case is the same 404, so a
lawyer cannot probe which cases exist or who their parties are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask_smorest.pagination import PaginationParameters
from sqlalchemy import select
from sqlalchemy.orm import Session

from servicekit import audit
from servicekit.blobs import BlobMissing, BlobStore, LocalBlobStore
from servicekit.config import data_dir
from servicekit.db import Database, legal_now, utcnow
from servicekit.ids import new_id
from servicekit.paging import page_of
from servicekit.problems import Problem
from servicekit.roles import CLERK, JUDGE
from servicekit.service import Runtime
from servicekit.uploads import Upload
from servicekit.versions import Precondition
from services.matters import events
from services.matters.access import (
    ensure_judge_or_clerk_of,
    ensure_staff_of,
    is_lawyer,
    is_staff_of,
    not_found,
)
from services.matters.applications import next_service_number
from services.matters.cases import load_case
from services.matters.domain import (
    APPROVED,
    BY_CLERK,
    BY_REQUEST,
    LAWYER_BINDING,
    PARTY_ROLES,
    PENDING,
    REJECTED,
    canonical_case_number,
    case_number_error,
    deadline_for,
    require_binding_status,
)
from services.matters.lawyers import verified
from services.matters.models import Binding, Case, CaseParty

EXTRAS_KEY = "matters.blobs"
DECIDERS = {JUDGE, CLERK}


def blob_store(rt: Runtime) -> BlobStore:
    """Letters of authorisation: ``MATTERS_BLOB_DIR``, default ``<ECOURT_DATA_DIR>/matters``."""
    store = rt.extras.get(EXTRAS_KEY)
    if store is None:
        root = os.environ.get("MATTERS_BLOB_DIR") or str(data_dir() / "matters")
        store = rt.extras[EXTRAS_KEY] = LocalBlobStore(Path(root))
    return store  # type: ignore[return-value]


def _no_such() -> Problem:
    return Problem(404, "not-found", "no case with this number has a party of this name")


def _find_party(case: Case, body: dict[str, Any], where: str,
                tell_apart: str) -> CaseParty | None:
    """The case's party ``body`` names — by ``party_id``, or by ``party_name`` (and
    ``party_role`` when given) — or None. Two parties may share a name (a plaintiff and a
    defendant both 张三; nothing forbids it): then the role must say which, or the lawyer might
    be bound to the other side — a 422 at ``party_role`` (in ``where``: "form" or "json") asks
    for it. Two of one name *and* role (two plaintiffs both 张三) cannot be told apart by name:
    a 422 at ``party_name`` says so and how to (``tell_apart``: the clerk names the party by
    id, which the case view shows; a lawyer, who cannot see the case yet, asks the court),
    rather than binding whichever comes first."""
    if body.get("party_id"):
        return next((p for p in case.parties if p.id == body["party_id"]), None)
    named = [p for p in case.parties if p.name == body["party_name"]
             and body.get("party_role") in (None, p.role)]
    if len(named) > 1 and len({p.role for p in named}) == 1:  # name and role alike
        raise Problem(422, "validation-error", "the request is invalid", errors={where: {
            "party_name": [f"{len(named)} parties of this case have this name and role: "
                           f"{tell_apart}"]}})
    if len(named) > 1:
        roles = "、".join(PARTY_ROLES[p.role] for p in named)
        raise Problem(422, "validation-error", "the request is invalid", errors={where: {
            "party_role": [f"{len(named)} parties of this case have this name ({roles}): "
                           "say which with party_role"]}})
    return named[0] if named else None


def _open(session: Session, case_id: str, lawyer_id: str, party_id: str) -> Binding | None:
    """The lawyer's pending or approved binding to this party, if any, locked for the caller's
    transaction (one being decided meanwhile is waited for and read as it was decided: a
    request rejected meanwhile is no longer open).

    The callers hold the case's row lock first, so two requests for the same
    lawyer and party cannot both find none and both insert one."""
    return session.scalars(select(Binding).where(
        Binding.case_id == case_id, Binding.lawyer_account_id == lawyer_id,
        Binding.party_id == party_id, Binding.status.in_((PENDING, APPROVED)))
        .with_for_update()).first()


def request(db: Database, blobs: BlobStore, claims: dict[str, Any], body: dict[str, Any],
            letter: Upload) -> tuple[Binding, Case]:
    body = {**body, "case_number": canonical_case_number(body["case_number"])}
    wrong = case_number_error(body["case_number"], utcnow())
    if wrong:
        raise Problem(422, "validation-error", "the request is invalid",
                      errors={"form": {"case_number": [wrong]}})
    with db.transaction() as session:
        lawyer = verified(session, claims["sub"])
        if lawyer is None:
            raise Problem(403, "lawyer-not-verified",
                          "only a verified lawyer may ask to be bound to a case")
        case = session.scalars(select(Case).where(
            Case.case_number == body["case_number"]).with_for_update()).first()
        party = (_find_party(case, body, "form", "a request cannot tell them apart; ask the "
                                                 "court to bind you")
                 if case is not None else None)
        if case is None or party is None:
            raise _no_such()
        if _open(session, case.id, lawyer.account_id, party.id) is not None:
            raise Problem(409, "binding-exists",
                          "you already asked to be, or are, bound to this party")
        # the letter is stored before the row that refers to it commits (content-addressed)
        sha256 = blobs.put(letter.data)
        now = legal_now()
        binding = Binding(
            id=new_id(), case_id=case.id, court=case.court,
            service_number=next_service_number(session, case.court, LAWYER_BINDING, now),
            lawyer_account_id=lawyer.account_id, lawyer_name=lawyer.name,
            law_firm=lawyer.law_firm, party_id=party.id, party_name=party.name,
            source=BY_REQUEST, status=PENDING, letter_sha256=sha256,
            letter_filename=letter.filename, letter_content_type=letter.content_type,
            letter_size=letter.size, deadline=deadline_for(LAWYER_BINDING, now),
            requested_at=now, escalation_level=0, version=1)
        session.add(binding)
        session.flush()
        events.binding_requested(session, binding, case)
    return binding, case


def bind_directly(db: Database, claims: dict[str, Any], case_id: str,
                  body: dict[str, Any]) -> tuple[Binding, Case]:
    """The case's clerk records a verified lawyer as a party's agent: approved at once. A pending
    request of the same lawyer for the same party is approved by it."""
    with db.transaction() as session:
        case = session.get(Case, case_id, with_for_update=True)  # see _open
        if case is None:
            raise not_found()
        ensure_staff_of(claims, case.court, {CLERK}, what="case", subject=f"case:{case.id}")
        ensure_judge_or_clerk_of(claims, case, subject=f"case:{case.id}")
        party = _find_party(case, body, "json", "name the one meant with party_id (the case's "
                                                "parties list their ids)")
        if party is None:
            field = "party_id" if body.get("party_id") else "party_name"
            raise Problem(422, "validation-error", "the request is invalid", errors={
                "json": {field: [f"no party of this {field.removeprefix('party_')} in the "
                                 "case"]}})
        lawyer = verified(session, body["lawyer_account_id"])
        if lawyer is None:
            raise Problem(422, "validation-error", "the request is invalid",
                          errors={"json": {"lawyer_account_id": ["not a verified lawyer"]}})
        now = legal_now()
        binding = _open(session, case.id, lawyer.account_id, party.id)
        if binding is not None and binding.status == APPROVED:
            raise Problem(409, "binding-exists", "this lawyer is already bound to this party")
        if binding is None:
            binding = Binding(
                id=new_id(), case_id=case.id, court=case.court,
                service_number=next_service_number(session, case.court, LAWYER_BINDING, now),
                lawyer_account_id=lawyer.account_id, lawyer_name=lawyer.name,
                law_firm=lawyer.law_firm, party_id=party.id, party_name=party.name,
                source=BY_CLERK, status=PENDING, deadline=now, requested_at=now,
                escalation_level=0, version=1)
            session.add(binding)
        _decide(binding, claims, APPROVED, None, now)
        session.flush()
        events.binding_approved(session, binding, case)
    return binding, case


def _decide(binding: Binding, claims: dict[str, Any], status: str, reason: str | None,
            now: Any) -> None:
    binding.status = status
    binding.reason = reason
    binding.decided_at = now
    binding.decided_by_account_id = claims["sub"]
    binding.decided_by_name = claims.get("name") or None
    binding.version += 1


@contextmanager
def _deciding(db: Database, claims: dict[str, Any], binding_id: str,
              if_match: Precondition) -> Iterator[tuple[Session, Binding, Case]]:
    with db.transaction() as session:
        binding = session.get(Binding, binding_id, with_for_update=True)
        if binding is None:
            raise not_found("binding request")
        ensure_staff_of(claims, binding.court, DECIDERS, what="binding request",
                        subject=f"binding:{binding.id}")
        case = load_case(session, binding.case_id)
        ensure_judge_or_clerk_of(claims, case, subject=f"binding:{binding.id}")
        if_match.decide(str(binding.version), "binding request")
        require_binding_status(binding.status, (PENDING,), "decide")
        yield session, binding, case


def approve(db: Database, claims: dict[str, Any], binding_id: str,
            if_match: Precondition) -> tuple[Binding, Case]:
    with _deciding(db, claims, binding_id, if_match) as (session, binding, case):
        _decide(binding, claims, APPROVED, None, legal_now())
        events.binding_approved(session, binding, case)
    return binding, case


def reject(db: Database, claims: dict[str, Any], binding_id: str, reason: str,
           if_match: Precondition) -> tuple[Binding, Case]:
    with _deciding(db, claims, binding_id, if_match) as (session, binding, case):
        _decide(binding, claims, REJECTED, reason, legal_now())
        events.binding_rejected(session, binding, case)
    return binding, case


def _sees(claims: dict[str, Any], binding: Binding) -> bool:
    return is_staff_of(claims, binding.court) or (
        is_lawyer(claims) and binding.lawyer_account_id == claims.get("sub"))


def get(db: Database, claims: dict[str, Any], binding_id: str) -> tuple[Binding, Case]:
    """A binding request, to its court's staff and to the lawyer who made it."""
    with db.transaction(reads_only=True) as session:
        binding = session.get(Binding, binding_id)
        if binding is None:
            raise not_found("binding request")
        if not _sees(claims, binding):
            audit.note_denied(f"binding:{binding.id}")
            raise not_found("binding request")
        return binding, load_case(session, binding.case_id)


def letter(db: Database, blobs: BlobStore, claims: dict[str, Any],
           binding_id: str) -> tuple[Binding, bytes]:
    binding, _ = get(db, claims, binding_id)
    if binding.letter_sha256 is None:
        raise Problem(404, "not-found", "this binding was recorded without an uploaded letter")
    try:
        return binding, blobs.get(binding.letter_sha256)
    except BlobMissing as exc:
        raise Problem(503, "blob-missing", "the letter is temporarily unavailable") from exc


def listing(db: Database, claims: dict[str, Any], args: dict[str, Any],
            page: PaginationParameters) -> list[tuple[Binding, Case]]:
    """Staff: their court's binding requests (the to-do is ``status=pending``), oldest
    deadline first. A lawyer: their own requests. One page."""
    court = claims.get("court") or ""
    with db.transaction(reads_only=True) as session:
        query = select(Binding, Case).join(Case, Case.id == Binding.case_id)
        if is_staff_of(claims, court):
            query = query.where(Binding.court == court)
        elif is_lawyer(claims):
            query = query.where(Binding.lawyer_account_id == claims.get("sub"))
        else:
            raise Problem(403, "forbidden", "court staff and lawyers only")
        if args.get("status"):
            query = query.where(Binding.status == args["status"])
        rows = page_of(session, query.order_by(Binding.deadline, Binding.id), page)
        return [(b, c) for b, c in rows]
