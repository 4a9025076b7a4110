"""Accounts: registering an individual, reading an account, the password hasher.

A registration refused 409 (the ID number or phone taken) commits its count against the
client's address, so under an ``Idempotency-Key`` the refusal is stored and replayed like a
201 (``servicekit.idempotency``), and that is meant: a client retrying after a timeout is told
what it was told the first time and is not counted twice (a flaky line would otherwise spend
an honest address's 5 refusals); the replay answers only the body it was given (another body
under the key is ``422 idempotency-key-reused``), so it tells nothing new, and every new key
runs the check and counts again, so keys are no way around the count.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from servicekit.db import Database, utcnow
from servicekit.outbox import emit
from servicekit.problems import Problem
from services.identity.domain import ACTIVE, INDIVIDUAL
from services.identity.models import Account
from services.identity.usecases import throttle

SOURCE = "/identity"
_REFUSED = "refused registrations"
hasher = PasswordHasher()  # argon2id with the library's current defaults
#: verified against when the username is unknown, so a miss costs as long as a wrong password
DUMMY_HASH = hasher.hash("not-a-password-of-anyone")


def duplicate(session: Session, *, phone: str, id_number: str | None = None) -> Problem | None:
    """The 409 to answer when the phone (or ID number) already belongs to an account."""
    clauses = [Account.phone == phone]
    if id_number is not None:
        clauses.append(Account.id_number == id_number)
    taken = session.scalars(select(Account).where(or_(*clauses))).first()
    if taken is None:
        return None
    field = "id_number" if id_number is not None and taken.id_number == id_number else "phone"
    return Problem(409, "account-exists", "an account with these details exists",
                   errors={field: ["already registered"]})


def registered(session: Session, account: Account) -> None:
    """Add the account and its ``identity.account.registered`` event (no contact details)."""
    session.add(account)
    emit(session, "identity.account.registered",
         {"account_id": account.id, "kind": account.kind,
          "registered_at": account.created_at.isoformat()},
         source=SOURCE, subject=account.id)


def conflict_on_race(exc: IntegrityError) -> Problem:
    """Two registrations of the same phone at once: the database's unique key decides."""
    field = "id_number" if "id_number" in str(exc.orig) else "phone"
    return Problem(409, "account-exists", "an account with these details exists",
                   errors={field: ["already registered"]})


def register_individual(db: Database, name: str, id_number: str, phone: str,
                        password: str, *, client_ip: str) -> Account:
    """Register an individual; a taken phone or ID number is a 409 naming the field (the
    registering person must know), throttled per client address so the 409s cannot look up
    who is registered without limit.

    The transaction first reserves an attempt against the address (``throttle.REGISTRATION``,
    under its per-key lock, so a parallel burst cannot slip past the limit): a registration
    that succeeds drops it with the account's insert, a refused one commits it as a failure
    before its 409 is raised. After 5 refusals in 15 minutes every registration from the
    address is a 429 until the window passes; a read-only look at the counter answers it
    before the password is hashed, so a throttled address costs no argon2 hash. (A refusal
    by the unique key, when two registrations of one number race past the check, rolls back
    and is not counted: a race is no way to look numbers up.)"""
    id_number = id_number.upper()
    with db.sessions() as session:  # read only and rolled back: no commit, nothing written
        throttle.check(session, [(throttle.REGISTRATION, client_ip)], what=_REFUSED)
    password_hash = hasher.hash(password)  # slow (argon2): outside the transaction
    try:
        with db.transaction() as session:
            reserved = throttle.reserve(session, [(throttle.REGISTRATION, client_ip)],
                                        what=_REFUSED)
            problem = duplicate(session, phone=phone, id_number=id_number)
            if problem is None:
                account = Account(id=str(uuid.uuid4()), kind=INDIVIDUAL, name=name,
                                  id_number=id_number, phone=phone,
                                  password_hash=password_hash, roles="party", status=ACTIVE,
                                  created_at=utcnow())
                registered(session, account)
                throttle.succeeded(session, reserved, [])
    except IntegrityError as exc:
        raise conflict_on_race(exc) from exc
    if problem is not None:
        raise problem  # after the commit, which keeps the refusal counted
    return account


def account_of(db: Database, account_id: str) -> Account:
    """The account, read without the write lock (a reading transaction)."""
    with db.transaction(reads_only=True) as session:
        account = session.get(Account, account_id)
    if account is None:
        raise Problem(404, "not-found", "no such account")
    return account


@dataclass(frozen=True)
class Contact:
    id: str
    phone: str | None


def contact_of(db: Database, account_id: str) -> Contact:
    """Where an account's notices go: its phone; an organization's go to the phone of the
    individual who registered it."""
    from services.identity.organizations import contact_phone  # organizations imports us

    with db.transaction(reads_only=True) as session:  # delivery asks at every send
        account = session.get(Account, account_id)
        if account is None:
            raise Problem(404, "not-found", "no such account")
        return Contact(account.id, contact_phone(session, account))
