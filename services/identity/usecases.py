"""identity's use cases: open the unit of work, apply the rules, emit, commit."""

from __future__ import annotations

import uuid

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import or_, select

from servicekit.db import Database, utcnow
from servicekit.outbox import emit
from servicekit.problems import Problem
from services.identity.models import Account

SOURCE = "/identity"
_hasher = PasswordHasher()  # argon2id with the library's current defaults


def register_individual(db: Database, name: str, id_number: str, phone: str,
                        password: str) -> Account:
    id_number = id_number.upper()
    with db.transaction() as session:
        taken = session.scalars(select(Account).where(
            or_(Account.id_number == id_number, Account.phone == phone))).first()
        if taken is not None:
            field = "id_number" if taken.id_number == id_number else "phone"
            raise Problem(409, "account-exists", "an account with these details exists",
                          errors={field: ["already registered"]})
        account = Account(id=str(uuid.uuid4()), kind="individual", name=name,
                          id_number=id_number, phone=phone,
                          password_hash=_hasher.hash(password), roles="party",
                          status="active", created_at=utcnow())
        session.add(account)
        emit(session, "identity.account.registered",
             {"account_id": account.id, "kind": account.kind,
              "registered_at": account.created_at.isoformat()},
             source=SOURCE, subject=account.id)
    return account


def authenticate(db: Database, username: str, password: str) -> Account:
    with db.transaction() as session:
        account = session.scalars(select(Account).where(
            or_(Account.phone == username, Account.id_number == username.upper()))).first()
    try:
        if account is None or account.status != "active":
            raise VerificationError("no such active account")
        _hasher.verify(account.password_hash, password)
    except VerificationError as exc:
        raise Problem(401, "invalid-credentials", "wrong username or password") from exc
    return account


def contact_of(db: Database, account_id: str) -> Account:
    with db.transaction() as session:
        account = session.get(Account, account_id)
    if account is None:
        raise Problem(404, "not-found", "no such account")
    return account
