"""Legal persons (法人): registered by a signed-in individual, reviewed by the chosen court.

An organization is an account of kind ``organization`` whose username is its USCC; it has no
phone of its own (its notices go to the individual who registered it) and cannot sign in until
a registry reviewer or court administrator of the chosen court approves it, within five working
days. The business licence is kept in identity's blob store after a check of its content
(``servicekit.uploads``). Events carry ids, court and name, never the USCC or contact details.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from flask_smorest.pagination import PaginationParameters
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from servicekit import audit
from servicekit.blobs import LocalBlobStore
from servicekit.config import data_dir
from servicekit.db import Database, utcnow
from servicekit.ids import new_id
from servicekit.outbox import emit
from servicekit.paging import page_of
from servicekit.problems import Problem
from servicekit.roles import COURT_ADMIN, REGISTRY_REVIEWER
from servicekit.service import Runtime
from servicekit.uploads import Upload
from servicekit.versions import Precondition
from services.identity import domain
from services.identity import organizations_domain as rules
from services.identity.models import Account, Court
from services.identity.models_orgs import LawyerVerification, Organization
from services.identity.usecases.accounts import SOURCE, hasher

log = logging.getLogger(__name__)
REVIEWER_ROLES = (REGISTRY_REVIEWER, COURT_ADMIN)
BLOB_DIR_ENV = "IDENTITY_BLOB_DIR"


def blob_store(rt: Runtime) -> LocalBlobStore:
    """identity's uploaded files: ``IDENTITY_BLOB_DIR``, default ``<data dir>/identity``."""
    store = rt.extras.get("identity_blobs")
    if store is None:
        root = os.environ.get(BLOB_DIR_ENV) or Path(data_dir()) / "identity"
        store = rt.extras["identity_blobs"] = LocalBlobStore(root)
    return store  # type: ignore[return-value]


def invalid(field: str, message: str) -> Problem:
    return Problem(422, "validation-error", "the request is invalid",
                   errors={field: [message]})


@dataclass(frozen=True)
class Caller:
    """Who is asking: the token's subject, roles and (for staff) court."""

    account_id: str
    roles: tuple[str, ...]
    court: str | None

    def reviews_for(self, court: str | None) -> bool:
        return bool(self.court) and self.court == court and any(
            r in self.roles for r in REVIEWER_ROLES)


def individual_of(session: Session, account_id: str, *, lock: bool = False) -> Account:
    """The caller's account, an active individual (else 403). ``lock`` holds its row to the
    end of the transaction and reads it as it is once locked: an account this session read
    before keeps what it read unless reloaded, and a decision taken on that would be stale."""
    account = session.get(Account, account_id, with_for_update=lock or None,
                          populate_existing=lock)
    if account is None or account.kind != domain.INDIVIDUAL or account.status != domain.ACTIVE:
        raise Problem(403, "individuals-only",
                      "only a signed-in individual with real-name details can do this")
    return account


def known_court(session: Session, code: str) -> Court:
    court = session.get(Court, code)
    if court is None:
        raise invalid("court", f"no court {code}")
    return court


def register(rt: Runtime, caller: Caller, *, name: str, uscc: str, legal_representative: str,
             court: str, password: str, licence: Upload) -> Organization:
    uscc = rules.normalize_uscc(uscc)
    if not rules.uscc_well_formed(uscc):
        raise invalid("uscc", "not a unified social credit code (18 characters of "
                              "0-9 and A-Y without I, O, Z, S, V)")
    flagged = not rules.uscc_check_ok(uscc)
    password_hash = hasher.hash(password)  # slow: outside the transaction
    sha256 = blob_store(rt).put(licence.data)  # before the row that refers to it (blobs.py)
    now = utcnow()
    try:
        with rt.db.transaction() as session:
            applicant = individual_of(session, caller.account_id)
            known = known_court(session, court)
            if session.scalar(select(Organization.id).where(Organization.uscc == uscc)):
                raise Problem(409, "organization-exists",
                              "an organization with this code is registered",
                              errors={"uscc": ["already registered"]})
            account = Account(id=new_id(), kind=rules.ORGANIZATION, name=name,
                              id_number=None, phone=None, password_hash=password_hash,
                              roles="party", status=rules.PENDING_REVIEW, court=None,
                              department=None, created_at=now)
            session.add(account)
            session.flush()
            org = Organization(id=account.id, uscc=uscc, uscc_check_failed=flagged, name=name,
                               legal_representative=legal_representative, court=known.code,
                               applicant_account_id=applicant.id, licence_sha256=sha256,
                               licence_content_type=licence.content_type,
                               licence_filename=licence.filename, licence_size=licence.size,
                               status=rules.PENDING, submitted_at=now,
                               review_deadline=rules.review_deadline(now))
            session.add(org)
            emit(session, "identity.organization.registered",
                 {"organization_id": org.id, "court": org.court, "court_name": known.name,
                  "applicant_account_id": applicant.id, "name": org.name,
                  "uscc_check_failed": flagged,
                  "review_deadline": org.review_deadline.isoformat(),
                  "registered_at": now.isoformat()},
                 source=SOURCE, subject=org.id)
    except IntegrityError as exc:
        raise Problem(409, "organization-exists", "an organization with this code is registered",
                      errors={"uscc": ["already registered"]}) from exc
    log.info("organization registered", extra={"organization_id": org.id, "court": org.court,
                                                "account_id": caller.account_id,
                                                "uscc_check_failed": flagged})
    return org


def mine(db: Database, caller: Caller, page: PaginationParameters) -> list[Organization]:
    """One page of the organizations the caller registered, newest first."""
    query = (select(Organization).where(Organization.applicant_account_id == caller.account_id)
             .order_by(Organization.submitted_at.desc(), Organization.id.desc()))
    with db.transaction(reads_only=True) as session:
        return list(page_of(session, query, page).scalars())


def reviewer_court(caller: Caller) -> str:
    if not caller.court or not any(r in caller.roles for r in REVIEWER_ROLES):
        raise Problem(403, "forbidden", "only a court's registry reviewers review registrations")
    return caller.court


def reviews(db: Database, caller: Caller, status: str,
            page: PaginationParameters) -> list[Organization]:
    """One page of the registrations for the reviewer's court, the soonest deadline first."""
    court = reviewer_court(caller)
    query = (select(Organization).where(Organization.court == court,
                                        Organization.status == status)
             .order_by(Organization.review_deadline, Organization.id))
    with db.transaction(reads_only=True) as session:
        return list(page_of(session, query, page).scalars())


Reviewed = TypeVar("Reviewed", Organization, LawyerVerification)


def shown_to(caller: Caller, row: Reviewed | None, owner: str | None, kind: str) -> Reviewed:
    """``row`` (an organization or a lawyer verification) if ``caller`` is its ``owner`` (the
    account that submitted it) or a reviewer of its court; a 404 for anyone else (another
    court's staff learn nothing, not even that it exists), noted in the audit trail."""
    if row is None or not (owner == caller.account_id or caller.reviews_for(row.court)):
        if row is not None:
            audit.note_denied(f"{kind}:{row.id}")
        raise Problem(404, "not-found", f"no such {kind.replace('_', ' ')}")
    return row


def visible(db: Database, caller: Caller, org_id: str) -> Organization:
    """The organization, for its registrant or its court's reviewers (``shown_to``). Read
    without the write lock (a reading transaction); a refusal's audit entry is written by the
    web layer in a transaction of its own."""
    with db.transaction(reads_only=True) as session:
        org = session.get(Organization, org_id)
    return shown_to(caller, org, org.applicant_account_id if org else None, "organization")


def licence(rt: Runtime, caller: Caller, org_id: str) -> tuple[Organization, bytes]:
    org = visible(rt.db, caller, org_id)
    return org, blob_store(rt).get(org.licence_sha256)


def decide(db: Database, caller: Caller, org_id: str, if_match: Precondition, *,
           approve: bool, reason: str | None = None) -> Organization:
    """Approve (the organization can sign in from now on) or reject, once.

    The version the reviewer read (If-Match) is checked only once they may review it, so
    another court's staff get the 404 of a missing registration, never a 428; a second
    reviewer acting on what they read before the first decided gets 412, not the change."""
    court = reviewer_court(caller)
    with db.transaction() as session:
        org = session.get(Organization, org_id, with_for_update=True)
        if org is None or org.court != court:
            if org is not None:
                audit.note_denied(f"organization:{org.id}")
            raise Problem(404, "not-found", "no such organization in your court")
        if_match.decide(str(org.version), "registration")
        if org.status != rules.PENDING:
            raise Problem(409, "already-reviewed", f"this registration was already {org.status}")
        account = session.get(Account, org.id)
        assert account is not None  # noqa: S101 - same transaction that created both
        court_name = session.get(Court, org.court).name  # type: ignore[union-attr]
        org.status = rules.APPROVED if approve else rules.REJECTED
        org.reviewed_at, org.reviewer_account_id = utcnow(), caller.account_id
        org.reason = reason
        org.version += 1
        account.status = domain.ACTIVE if approve else rules.REJECTED
        data = {"organization_id": org.id, "court": org.court, "court_name": court_name,
                "applicant_account_id": org.applicant_account_id, "name": org.name}
        if approve:
            emit(session, "identity.organization.approved", data, source=SOURCE, subject=org.id)
        else:
            emit(session, "identity.organization.rejected", {**data, "reason": reason},
                 source=SOURCE, subject=org.id)
    log.info("organization %s", org.status, extra={"organization_id": org.id,
                                                    "by": caller.account_id})
    return org


# hooks for the account routes ---------------------------------------------------------------

def account_by_uscc(session: Session, username: str) -> Account | None:
    """The organization account whose USCC is ``username`` (sign-in), or None."""
    if not rules.uscc_well_formed(username):
        return None
    return session.scalars(select(Account).join(Organization, Organization.id == Account.id)
                           .where(Organization.uscc == username)).first()


def contact_phone(session: Session, account: Account) -> str | None:
    """Where an account's notices go: its own phone, or for an organization the phone of the
    individual who registered it."""
    if account.kind != rules.ORGANIZATION:
        return account.phone
    org = session.get(Organization, account.id)
    applicant = session.get(Account, org.applicant_account_id) if org else None
    return applicant.phone if applicant else None


def sign_in_refusal(account: Account) -> Problem:
    """Why an account that is not active cannot sign in."""
    if account.status == rules.PENDING_REVIEW:
        return Problem(403, "organization-pending-review",
                       "this organization's registration is still being reviewed by the court")
    if account.status == rules.REJECTED:
        return Problem(403, "organization-rejected",
                       "this organization's registration was rejected by the court")
    return Problem(403, "account-disabled", "this account is disabled")
