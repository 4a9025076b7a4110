"""identity's tables for the other sign-in methods (captcha, SMS codes, QR tickets).

Nothing here holds a secret or a phone number in clear:

* ``captchas``         one image captcha: the answer's HMAC only; deleted on its first check
* ``signin_codes``     one SMS code (login, password reset, phone change): the code's HMAC, the
                       HMAC of the phone it went to, tries left; a phone change's new number is
                       kept sealed (Fernet) until it is confirmed
* ``signin_requests``  accepted code / ticket / captcha requests per phone (HMAC) and per client
                       address, for throttling windows longer than the password window
* ``qr_tickets``       one QR sign-in ticket, stored as its SHA-256, with the SHA-256 of its
                       poll secret (the web's alone, never in the QR code); the confirming
                       account
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from servicekit.db import BigId
from services.identity.models import Base


class Captcha(Base):
    __tablename__ = "captchas"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    answer_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column(index=True)


class SignInCode(Base):
    __tablename__ = "signin_codes"
    __table_args__ = (Index("ix_signin_codes_phone_purpose", "phone_key", "purpose"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(36), ForeignKey("accounts.id"), index=True)
    #: login, reset_password, change_phone_old, change_phone_new
    purpose: Mapped[str] = mapped_column(String(20))
    #: HMAC of the phone the code was sent to
    phone_key: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    #: the new number of a phone change, sealed; NULL otherwise
    target_sealed: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None] = mapped_column()


class SignInRequest(Base):
    __tablename__ = "signin_requests"
    __table_args__ = (Index("ix_signin_requests_scope_key", "scope", "key", "requested_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(20))  # one of signin_throttle's scopes (LIMITS)
    key: Mapped[str] = mapped_column(String(100))
    requested_at: Mapped[datetime] = mapped_column(index=True)


#: a QR ticket's states (``signin_qr``): pending → confirmed (by an account) → consumed (its
#: tokens handed out), or expired (its time ran out, or the account's sign-ins were all ended)
QR_PENDING, QR_CONFIRMED, QR_CONSUMED, QR_EXPIRED = "pending", "confirmed", "consumed", "expired"


class QrTicket(Base):
    __tablename__ = "qr_tickets"

    ticket_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: SHA-256 of the poll secret; NULL only for tickets made before migration 0008, which
    #: no poll can claim
    poll_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))  # QR_PENDING ... QR_EXPIRED
    account_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("accounts.id"))
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column(index=True)
    confirmed_at: Mapped[datetime | None] = mapped_column()
    consumed_at: Mapped[datetime | None] = mapped_column()
