"""Lawyer verification (律师认证): a signed-in individual proves they are a practising lawyer.

* online:  the practising-certificate number is looked up in the lawyer registry (the Ministry
           of Justice's, through ``adapters.lawyer_registry``); the same name as the account's
           real name, the same law firm and status ``practising`` verify at once, anything else
           is refused with the reason.
* offline: a face check (``adapters.face``) first, then the certificate and ID card scans wait
           for the chosen court's registry reviewers or administrator, who approve after seeing
           the originals in person, or reject with a reason.

Verification adds the role ``lawyer`` to the account (tokens issued afterwards carry it) and
emits ``identity.lawyer.verified`` with the name, certificate number and law firm (matters keeps
its copy of verified lawyers from it); never a phone or an ID number.
"""

from __future__ import annotations

import logging

from flask_smorest.pagination import PaginationParameters
from sqlalchemy import select
from sqlalchemy.orm import Session

from servicekit import audit
from servicekit.db import Database, utcnow
from servicekit.ids import new_id
from servicekit.outbox import emit
from servicekit.paging import page_of
from servicekit.problems import Problem
from servicekit.roles import LAWYER
from servicekit.service import Runtime
from servicekit.uploads import Upload
from servicekit.versions import Precondition
from services.identity import organizations_domain as rules
from services.identity.adapters.face import FaceVerifier, face_verifier_from_env
from services.identity.adapters.lawyer_registry import (
    PRACTISING,
    LawyerRegistry,
    lawyer_registry_from_env,
)
from services.identity.models import Account
from services.identity.models_orgs import LawyerVerification
from services.identity.organizations import (
    Caller,
    blob_store,
    individual_of,
    invalid,
    known_court,
    reviewer_court,
    shown_to,
)
from services.identity.usecases.accounts import SOURCE

log = logging.getLogger(__name__)
FILES = ("certificate", "id_card")


def registry(rt: Runtime) -> LawyerRegistry:
    return rt.extras.setdefault("lawyer_registry", lawyer_registry_from_env())  # type: ignore[return-value]


def face_verifier(rt: Runtime) -> FaceVerifier:
    return rt.extras.setdefault("face_verifier", face_verifier_from_env())  # type: ignore[return-value]


def _not_already(session: Session, account: Account) -> None:
    """409 when the account is a lawyer already or has an application pending. Decisive only
    with the account locked (``individual_of(lock=True)``): every writer of a verification
    locks it, so two applications at once are one and a 409."""
    if LAWYER in account.role_list:
        raise Problem(409, "already-verified", "this account is already verified as a lawyer")
    if session.scalar(select(LawyerVerification.id).where(
            LawyerVerification.account_id == account.id,
            LawyerVerification.status == rules.PENDING)):
        raise Problem(409, "verification-pending",
                      "an offline verification of this account is waiting for its court")


def _verified(session: Session, account: Account, row: LawyerVerification) -> None:
    account.roles = ",".join([*account.role_list, LAWYER])
    data = {"account_id": account.id, "name": account.name, "license_no": row.license_no,
            "law_firm": row.law_firm, "method": row.method,
            "verified_at": (row.reviewed_at or row.submitted_at).isoformat()}
    if row.court:
        data["court"] = row.court
    emit(session, "identity.lawyer.verified", data, source=SOURCE, subject=account.id)


def _check_license_no(license_no: str) -> None:
    if not rules.license_no_valid(license_no):
        raise invalid("license_no", "a practising certificate number is 17 digits")


def _registry_mismatch(found: object, account: Account, law_firm: str) -> str | None:
    """Why the registry's record does not verify this account, or None when it does."""
    if found is None:
        return "the lawyer registry has no practising certificate with this number"
    if found.name != account.name:  # type: ignore[attr-defined]
        return "the certificate is registered to another name than this account's real name"
    if found.law_firm != law_firm:  # type: ignore[attr-defined]
        return "the certificate is registered with another law firm"
    if found.status != PRACTISING:  # type: ignore[attr-defined]
        return "the certificate is not in force (the registry does not list it as practising)"
    return None


def verify_online(rt: Runtime, caller: Caller, *, license_no: str,
                  law_firm: str) -> LawyerVerification:
    _check_license_no(license_no)
    with rt.db.transaction() as session:
        account = individual_of(session, caller.account_id)
        _not_already(session, account)
        name = account.name
    found = registry(rt).lookup(license_no)  # an outside call: not inside a transaction
    with rt.db.transaction() as session:  # locked: one verification at a time (_not_already)
        account = individual_of(session, caller.account_id, lock=True)
        _not_already(session, account)
        why = _registry_mismatch(found, account, law_firm) if account.name == name else \
            "the account's name changed during the check; try again"
        if why is None:
            now = utcnow()
            row = LawyerVerification(id=new_id(), account_id=account.id,
                                     method=rules.ONLINE, license_no=license_no,
                                     law_firm=law_firm, court=None, status=rules.VERIFIED,
                                     submitted_at=now, reviewed_at=now)
            session.add(row)
            _verified(session, account, row)
    if why is not None:
        log.info("online lawyer verification refused", extra={"account_id": caller.account_id})
        raise Problem(422, "lawyer-not-verified", why)
    log.info("lawyer verified online", extra={"account_id": caller.account_id})
    return row


def apply_offline(rt: Runtime, caller: Caller, *, court: str, license_no: str, law_firm: str,
                  certificate: Upload, id_card: Upload) -> LawyerVerification:
    _check_license_no(license_no)
    with rt.db.transaction() as session:
        account = individual_of(session, caller.account_id)
        _not_already(session, account)
        known_court(session, court)
        name = account.name
    store = blob_store(rt)
    cert_sha, card_sha = store.put(certificate.data), store.put(id_card.data)
    face = face_verifier(rt).verify(account_id=caller.account_id, name=name,
                                    id_card_sha256=card_sha)
    if not face.passed:
        raise Problem(422, "face-check-failed", f"the face check did not pass: {face.detail}")
    with rt.db.transaction() as session:  # locked, as verify_online and decide lock it
        account = individual_of(session, caller.account_id, lock=True)
        _not_already(session, account)
        row = LawyerVerification(
            id=new_id(), account_id=account.id, method=rules.OFFLINE,
            license_no=license_no, law_firm=law_firm, court=court, status=rules.PENDING,
            face_check=face.detail[:200], certificate_sha256=cert_sha,
            certificate_content_type=certificate.content_type,
            certificate_filename=certificate.filename, id_card_sha256=card_sha,
            id_card_content_type=id_card.content_type, id_card_filename=id_card.filename,
            submitted_at=utcnow())
        session.add(row)
        emit(session, "identity.lawyer.verification_requested", {
            "verification_id": row.id, "account_id": account.id, "name": account.name,
            "law_firm": law_firm, "court": court,
            "submitted_at": row.submitted_at.isoformat()}, source=SOURCE, subject=account.id)
    log.info("offline lawyer verification submitted",
             extra={"account_id": caller.account_id, "court": court})
    return row


def mine(db: Database, caller: Caller, page: PaginationParameters) -> list[LawyerVerification]:
    """One page of the caller's own verification applications, newest first."""
    query = (select(LawyerVerification).where(LawyerVerification.account_id == caller.account_id)
             .order_by(LawyerVerification.submitted_at.desc(), LawyerVerification.id.desc()))
    with db.transaction(reads_only=True) as session:
        return list(page_of(session, query, page).scalars())


def reviews(db: Database, caller: Caller, status: str,
            page: PaginationParameters) -> list[tuple[LawyerVerification, str]]:
    """One page of the offline applications to the reviewer's court, oldest first, with the
    applicant's name."""
    court = reviewer_court(caller)
    query = (select(LawyerVerification, Account.name)
             .join(Account, Account.id == LawyerVerification.account_id)
             .where(LawyerVerification.court == court,
                    LawyerVerification.method == rules.OFFLINE,
                    LawyerVerification.status == status)
             .order_by(LawyerVerification.submitted_at, LawyerVerification.id))
    with db.transaction(reads_only=True) as session:
        return [(row, name) for row, name in page_of(session, query, page)]


def _of_court(session: Session, caller: Caller, verification_id: str,
              lock: bool = False) -> LawyerVerification:
    court = reviewer_court(caller)
    row = session.get(LawyerVerification, verification_id, with_for_update=lock)
    if row is None or row.court != court:
        if row is not None:
            audit.note_denied(f"lawyer_verification:{row.id}")
        raise Problem(404, "not-found", "no such lawyer verification in your court")
    return row


def file_of(rt: Runtime, caller: Caller, verification_id: str,
            which: str) -> tuple[bytes, str]:
    if which not in FILES:
        raise Problem(404, "not-found", "no such file")
    with rt.db.transaction(reads_only=True) as session:
        row = _of_court(session, caller, verification_id)
    sha, ctype = ((row.certificate_sha256, row.certificate_content_type) if which == FILES[0]
                  else (row.id_card_sha256, row.id_card_content_type))
    if not sha or not ctype:
        raise Problem(404, "not-found", "no such file")
    return blob_store(rt).get(sha), ctype


def visible(db: Database, caller: Caller, verification_id: str) -> LawyerVerification:
    """The application, for its applicant or (offline) its court's reviewers; 404 for anyone
    else, as for an organization (another court's staff learn nothing, not even that it
    exists). Read without the write lock (a reading transaction), as ``organizations.visible``."""
    with db.transaction(reads_only=True) as session:
        row = session.get(LawyerVerification, verification_id)
    return shown_to(caller, row, row.account_id if row else None, "lawyer_verification")


def decide(db: Database, caller: Caller, verification_id: str, if_match: Precondition, *,
           approve: bool, reason: str | None = None) -> LawyerVerification:
    """Approve (the account becomes a lawyer) or reject an offline application, once.

    If-Match is checked after the court's 403/404, before anything changes: a second
    reviewer acting on the version they read before the first decided gets 412."""
    with db.transaction() as session:
        row = _of_court(session, caller, verification_id, lock=True)
        if_match.decide(str(row.version), "lawyer verification")
        if row.status != rules.PENDING:
            raise Problem(409, "already-reviewed", f"this application was already {row.status}")
        account = session.get(Account, row.account_id, with_for_update=True)
        assert account is not None  # noqa: S101 - foreign key
        row.reviewed_at, row.reviewer_account_id = utcnow(), caller.account_id
        row.version += 1
        if approve:
            row.status = rules.VERIFIED
            if LAWYER not in account.role_list:
                _verified(session, account, row)
        else:
            row.status, row.reason = rules.REJECTED, reason
            emit(session, "identity.lawyer.rejected",
                 {"account_id": account.id, "verification_id": row.id, "court": row.court,
                  "reason": reason}, source=SOURCE, subject=account.id)
    log.info("lawyer verification %s", row.status,
             extra={"account_id": row.account_id, "by": caller.account_id})
    return row
