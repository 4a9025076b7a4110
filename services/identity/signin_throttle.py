"""Throttling requests that cost something (an SMS, a QR ticket, a captcha) per client
address, per phone asked for from an address, per account, in the database so every worker
agrees (RELIABILITY S3).

A limit anyone can reach for someone else's number must not stop its owner: so a number's
allowance of sign-in and reset codes is counted per requesting address (``SMS_PHONE_IP``),
and what a number receives from all addresses together is bounded by a *quiet* cap
(``SMS_TARGET``, ``CHANGE_TARGET``; ``allows``): past it the request is answered alike and
nothing is sent, so the cap neither refuses the owner nor tells whether the number has an
account.

The password throttle (``usecases/throttle.py``) counts *failures* in a 15-minute window; here
every *accepted* request counts, in windows of up to an hour, so the rows live in their own
table (``signin_requests``). Phones are keyed by an HMAC, never in clear. The same per-key
lock as the password throttle (PostgreSQL advisory lock; SQLite serialises writers) keeps a
parallel burst from slipping past a limit.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from servicekit.db import utcnow
from servicekit.problems import Problem
from services.identity.domain import retry_after
from services.identity.models_signin import SignInRequest
from services.identity.usecases.throttle import _lock

#: sign-in and reset codes asked for a phone from one client address (``phone_address_key``):
#: what a stranger asks for someone's number spends the stranger's allowance, not the owner's
SMS_PHONE_IP = "sms_phone_ip"
#: sign-in and reset codes sent to a number (HMAC), from every address: a quiet cap (``allows``)
SMS_TARGET = "sms_target"
SMS_IP = "sms_ip"
#: phone changes started, per account: whatever the numbers, so they need not count against
#: the number named (anyone can name anyone's)
PHONE_CHANGE = "phone_change"
#: new-phone codes sent to a number (HMAC), by whoever: a quiet cap (``allows``)
CHANGE_TARGET = "change_target"
QR_IP = "qr_ip"
CAPTCHA_IP = "captcha_ip"

HOUR = timedelta(hours=1)
MINUTE = timedelta(seconds=60)
#: (requests allowed, window) per scope; every rule of the scope must allow the request
LIMITS: dict[str, tuple[tuple[int, timedelta], ...]] = {
    SMS_PHONE_IP: ((5, HOUR), (1, MINUTE)),
    SMS_TARGET: ((10, HOUR),),
    SMS_IP: ((5, HOUR),),
    PHONE_CHANGE: ((3, HOUR), (1, MINUTE)),
    CHANGE_TARGET: ((10, HOUR),),
    QR_IP: ((30, timedelta(minutes=10)),),
    CAPTCHA_IP: ((60, timedelta(minutes=10)),),
}
LONGEST = max(window for rules in LIMITS.values() for _, window in rules)

Key = tuple[str, str]


def phone_key(phone: str, pepper: str) -> str:
    """How a phone is named in throttling and code rows: an HMAC, never the number."""
    return hmac.new(pepper.encode(), b"phone:" + phone.encode(), hashlib.sha256).hexdigest()


def phone_address_key(phone: str, client_ip: str, pepper: str) -> str:
    """A phone as asked for from one client address, for ``SMS_PHONE_IP``: an HMAC too."""
    message = b"phone-address:" + phone.encode() + b"|" + client_ip.encode()
    return hmac.new(pepper.encode(), message, hashlib.sha256).hexdigest()


def _wait(session: Session, key: Key, now: datetime) -> int | None:
    """Seconds until the key's limits allow one more request, or None when they do now."""
    scope, name = key
    times = session.scalars(select(SignInRequest.requested_at).where(
        SignInRequest.scope == scope, SignInRequest.key == name,
        SignInRequest.requested_at > now - LONGEST)).all()
    waits = [wait for limit, window in LIMITS[scope]
             if (wait := retry_after(times, now, limit=limit, window=window)) is not None]
    return max(waits, default=None)


def _count(session: Session, keys: list[Key], now: datetime) -> None:
    session.add_all([SignInRequest(scope=scope, key=key, requested_at=now)
                     for scope, key in keys])
    session.flush()


def admit(session: Session, keys: list[Key], now: datetime | None = None) -> None:
    """Refuse with 429 (and ``Retry-After``) when any limit of any key is reached; else count
    this request against every key."""
    now = now or utcnow()
    _lock(session, keys)
    session.execute(delete(SignInRequest).where(SignInRequest.requested_at <= now - LONGEST))
    waits = [wait for key in keys if (wait := _wait(session, key, now)) is not None]
    if waits:
        seconds = max(waits)
        raise Problem(429, "too-many-requests",
                      f"too many requests; try again in {seconds} seconds",
                      headers={"Retry-After": str(seconds)}, retry_after=seconds)
    _count(session, keys, now)


def allows(session: Session, key: Key, now: datetime | None = None) -> bool:
    """Whether the key's limits allow one more, counting it when they do. Never refuses: for
    what a request quietly goes without past the limit (an SMS to a number the requester
    names), so that the answer cannot depend on that number. Call it after ``admit`` in the
    same transaction (its lock comes last: no lock-order cycle)."""
    now = now or utcnow()
    _lock(session, [key])
    if _wait(session, key, now) is not None:
        return False
    _count(session, [key], now)
    return True


def limited(session: Session, keys: list[Key], now: datetime | None = None) -> bool:
    """Whether ``admit`` would refuse these keys now; reads only (no lock, nothing counted)."""
    now = now or utcnow()
    return any(_wait(session, key, now) is not None for key in keys)


def seen(session: Session, keys: list[Key], now: datetime | None = None) -> bool:
    """Whether any of the keys has a request counted within its scope's longest window."""
    now = now or utcnow()
    return any(session.scalar(select(SignInRequest.id).where(
        SignInRequest.scope == scope, SignInRequest.key == name,
        SignInRequest.requested_at > now - max(window for _, window in LIMITS[scope]))
        .limit(1)) is not None for scope, name in keys)
