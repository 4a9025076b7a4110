"""Court staff: created by their court's administrator (the first one by ``ecourt
create-admin``), listed for that administrator, found by other services by court, role and
department, and disabled (which ends their sign-ins at once)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from servicekit import audit
from servicekit.db import Database, utcnow
from servicekit.problems import Problem
from servicekit.roles import COURT_ADMIN
from services.identity import domain
from services.identity.models import Account, Court
from services.identity.usecases.accounts import conflict_on_race, duplicate, hasher, registered
from services.identity.usecases.sessions import revoke_account_sessions

log = logging.getLogger(__name__)


def _same_court(caller_court: str | None, court: str | None) -> str:
    """The court the caller administers; a court administrator acts only on their own."""
    if not caller_court:
        raise Problem(403, "forbidden", "your token names no court")
    if court is not None and court != caller_court:
        raise Problem(403, "forbidden", "you administer another court")
    return caller_court


def _court_known(session: Session, code: str, name: str | None) -> None:
    """404 unless the court is known; with ``name`` (the CLI's first administrator) it is
    recorded, or renamed. Two first administrators of a new court at once both find none:
    the second's insert meets the first's on the court's key, in a savepoint, and renames
    it instead (it was a 409 ``account-exists`` naming a phone no one had)."""
    known = session.get(Court, code)
    if known is None and name is None:
        raise Problem(404, "court-not-found", f"no court {code}")
    if known is None:
        try:
            with session.begin_nested():
                session.add(Court(code=code, name=name, created_at=utcnow()))
            return
        except IntegrityError:
            known = session.get(Court, code)  # the other's, committed meanwhile
            assert known is not None  # noqa: S101 - its insert was refused by the key
    if name is not None:
        known.name = name


def create_staff(db: Database, *, caller_court: str | None, name: str, phone: str,
                 password: str, roles: Sequence[str], department: str | None = None,
                 court: str | None = None, court_name: str | None = None) -> Account:
    """A staff account of ``caller_court``. ``court_name`` (the CLI's first administrator)
    records or renames the court; otherwise the court must already be known."""
    court = _same_court(caller_court, court)
    problem = domain.staff_roles_problem(list(roles))
    if problem:
        raise Problem(422, "validation-error", "the request is invalid",
                      errors={"roles": [problem]})
    password_hash = hasher.hash(password)
    try:
        with db.transaction() as session:
            _court_known(session, court, court_name)
            taken = duplicate(session, phone=phone)
            if taken is not None:
                raise taken
            account = Account(id=str(uuid.uuid4()), kind=domain.STAFF, name=name,
                              id_number=None, phone=phone, password_hash=password_hash,
                              roles=",".join(roles), status=domain.ACTIVE, court=court,
                              department=department, created_at=utcnow())
            registered(session, account)
    except IntegrityError as exc:
        raise conflict_on_race(exc) from exc
    log.info("staff account created", extra={"account_id": account.id, "court": court,
                                              "roles": account.roles})
    return account


def create_admin(db: Database, *, court: str, court_name: str, name: str, phone: str,
                 password: str, department: str | None = None) -> Account:
    """A court's administrator, from the command line (no token: the operator is trusted)."""
    return create_staff(db, caller_court=court, court=court, court_name=court_name, name=name,
                        phone=phone, password=password, roles=[COURT_ADMIN],
                        department=department)


def _staff_query(court: str, role: str | None, department: str | None):  # type: ignore[no-untyped-def]
    query = select(Account).where(Account.kind == domain.STAFF, Account.court == court)
    if department is not None:
        query = query.where(Account.department == department)
    return query.order_by(Account.department, Account.name, Account.id)


def _with_role(accounts: Sequence[Account], role: str | None) -> list[Account]:
    # roles are a short comma-separated list; matching whole names in Python avoids
    # LIKE patterns that would take "judge" for a part of another role's name
    return [a for a in accounts if role is None or role in a.role_list]


def list_staff(db: Database, *, caller_court: str | None, role: str | None = None,
               department: str | None = None) -> list[Account]:
    court = _same_court(caller_court, None)
    with db.transaction(reads_only=True) as session:
        accounts = session.scalars(_staff_query(court, role, department)).all()
    return _with_role(accounts, role)


def find_staff(db: Database, *, court: str, role: str | None = None,
               department: str | None = None) -> list[Account]:
    """Active staff of a court (for other services: who heads a division, who presides)."""
    with db.transaction(reads_only=True) as session:
        accounts = session.scalars(_staff_query(court, role, department).where(
            Account.status == domain.ACTIVE)).all()
    return _with_role(accounts, role)


def set_status(db: Database, *, caller_court: str | None, caller_id: str, account_id: str,
               active: bool) -> Account:
    """Disable (or enable again) a staff member of the caller's court. Disabling revokes
    every refresh token of the account in the same transaction."""
    court = _same_court(caller_court, None)
    if account_id == caller_id and not active:
        raise Problem(409, "cannot-disable-self", "you cannot disable your own account")
    with db.transaction() as session:
        account = session.get(Account, account_id)
        if account is None or account.kind != domain.STAFF or account.court != court:
            if account is not None:  # hidden, but a decision about it: on the audit trail
                audit.note_denied(f"account:{account.id}")
            raise Problem(404, "not-found", "no such staff member in your court")
        account.status = domain.ACTIVE if active else domain.DISABLED
        revoked = 0 if active else revoke_account_sessions(session, account.id, "disabled")
    log.info("staff account %s", "enabled" if active else "disabled",
             extra={"account_id": account_id, "by": caller_id, "sessions_revoked": revoked})
    return account
