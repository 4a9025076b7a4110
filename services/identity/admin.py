"""The first administrator of a court, from the command line (``ecourt create-admin``).

Nobody can sign in before a court has an administrator, so the first one is made by an
operator with access to identity's database (embedded: SQLite under ``ECOURT_DATA_DIR``;
distributed: ``IDENTITY_DATABASE_URL``). The database is migrated first. The password comes
from ``--password``, else ``ECOURT_ADMIN_PASSWORD`` (kept out of shell history), else a prompt.
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass

from marshmallow import ValidationError

from servicekit import migrations
from servicekit.config import Settings
from servicekit.db import Database
from servicekit.logs import mask_phone
from servicekit.problems import Problem
from servicekit.roles import COURT_ADMIN
from services.identity.app import SERVICE
from services.identity.schemas import CreateStaffSchema
from services.identity.usecases import staff

PASSWORD_ENV = "ECOURT_ADMIN_PASSWORD"  # noqa: S105 - the variable's name, not a password


class AdminError(Exception):
    """The administrator could not be created; the message says why (no secrets in it)."""


@dataclass(frozen=True)
class Created:
    account_id: str
    court: str
    phone_masked: str


def password_from(given: str | None) -> str:
    if given:
        return given
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            raise AdminError("the passwords differ")
        return first
    raise AdminError(f"give --password, set {PASSWORD_ENV} or run in a terminal")


def create_admin(*, court: str, court_name: str, name: str, phone: str, password: str,
                 department: str | None = None, database_url: str | None = None) -> Created:
    try:
        body = CreateStaffSchema().load({"court": court, "name": name, "phone": phone,
                                         "password": password, "department": department,
                                         "roles": [COURT_ADMIN]})
    except ValidationError as exc:
        fields = {k: v for k, v in exc.messages_dict.items() if k != "password"}
        if "password" in exc.messages_dict:
            fields["password"] = ["8 to 128 characters"]
        raise AdminError(f"invalid: {fields}") from exc
    if not court_name.strip() or len(court_name) > 100:
        raise AdminError("invalid: court name must be 1 to 100 characters")
    url = database_url or Settings.from_env("identity").database_url
    migrations.upgrade(SERVICE.migrations, url)
    db = Database(url)
    try:
        account = staff.create_admin(db, court=body["court"], court_name=court_name.strip(),
                                     name=body["name"], phone=body["phone"],
                                     password=body["password"], department=body["department"])
    except Problem as exc:
        raise AdminError(f"{exc.detail}: {exc.extensions.get('errors', '')}") from exc
    finally:
        db.dispose()
    return Created(account.id, court, mask_phone(account.phone))
