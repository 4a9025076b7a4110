"""identity's tables. ID numbers and phones are stored here and nowhere else in the suite.

* ``courts``          a court's code (法院代字, e.g. ``粤01``) and name; staff belong to one
* ``accounts``        every account: individuals (with an ID number) and court staff (without
                      one: ``id_number`` is NULL; it stays unique among those who have one)
* ``refresh_tokens``  one row per issued refresh token, stored as its SHA-256 only; rows of one
                      sign-in share a ``family_id`` (rotation chain)
* ``login_failures``  failed (or in-flight) password attempts per account and per client
                      address, in the database so every gunicorn worker sees the same counts
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from servicekit import audit
from servicekit.db import BigId, new_base

Base = new_base()


class Court(Base):
    __tablename__ = "courts"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column()


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # individual, staff, organization, lawyer
    name: Mapped[str] = mapped_column(String(100))
    id_number: Mapped[str | None] = mapped_column(String(18), unique=True)
    #: NULL for organizations: their notices go to the individual who registered them
    phone: Mapped[str | None] = mapped_column(String(11), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    roles: Mapped[str] = mapped_column(String(200), default="party")
    status: Mapped[str] = mapped_column(String(20), default="active")
    court: Mapped[str | None] = mapped_column(String(20), ForeignKey("courts.code"), index=True)
    department: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column()

    @property
    def role_list(self) -> list[str]:
        return [r for r in self.roles.split(",") if r]


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    parent_id: Mapped[str | None] = mapped_column(String(36))
    account_id: Mapped[str] = mapped_column(String(36), ForeignKey("accounts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    #: set when the token was exchanged for a new pair; presenting it again is reuse
    rotated_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    revoked_reason: Mapped[str | None] = mapped_column(String(30))


class LoginFailure(Base):
    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_scope_key", "scope", "key", "failed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(10))  # "account" | "ip"
    #: an account id, an HMAC of an unknown username, or a client address
    key: Mapped[str] = mapped_column(String(100))
    failed_at: Mapped[datetime] = mapped_column(index=True)


# The audit trail records every change of an account (servicekit.audit): statuses and roles
# with their values, names, numbers and password hashes by name only.
audit.track(Account, "account", values=("kind", "roles", "status", "court", "department"))


from services.identity import (  # noqa: E402
    models_orgs,  # noqa: F401  (organizations, lawyers)
    models_signin,  # noqa: F401  (captchas, SMS codes, QR tickets)
)
