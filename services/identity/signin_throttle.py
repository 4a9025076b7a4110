"""Throttling requests that cost something (an SMS, a QR ticket, a captcha) per phone and per
client address, in the database so every worker agrees (RELIABILITY S3).

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

SMS_PHONE = "sms_phone"
SMS_IP = "sms_ip"
QR_IP = "qr_ip"
CAPTCHA_IP = "captcha_ip"

HOUR = timedelta(hours=1)
#: (requests allowed, window) per scope; every rule of the scope must allow the request
LIMITS: dict[str, tuple[tuple[int, timedelta], ...]] = {
    SMS_PHONE: ((5, HOUR), (1, timedelta(seconds=60))),
    SMS_IP: ((5, HOUR),),
    QR_IP: ((30, timedelta(minutes=10)),),
    CAPTCHA_IP: ((60, timedelta(minutes=10)),),
}
LONGEST = max(window for rules in LIMITS.values() for _, window in rules)

Key = tuple[str, str]


def phone_key(phone: str, pepper: str) -> str:
    """How a phone is named in throttling and code rows: an HMAC, never the number."""
    return hmac.new(pepper.encode(), b"phone:" + phone.encode(), hashlib.sha256).hexdigest()


def admit(session: Session, keys: list[Key], now: datetime | None = None) -> None:
    """Refuse with 429 (and ``Retry-After``) when any limit of any key is reached; else count
    this request against every key."""
    now = now or utcnow()
    _lock(session, keys)
    session.execute(delete(SignInRequest).where(SignInRequest.requested_at <= now - LONGEST))
    waits: list[int] = []
    for scope, key in keys:
        times = session.scalars(select(SignInRequest.requested_at).where(
            SignInRequest.scope == scope, SignInRequest.key == key,
            SignInRequest.requested_at > now - LONGEST)).all()
        for limit, window in LIMITS[scope]:
            wait = retry_after(times, now, limit=limit, window=window)
            if wait is not None:
                waits.append(wait)
    if waits:
        seconds = max(waits)
        raise Problem(429, "too-many-requests",
                      f"too many requests; try again in {seconds} seconds",
                      headers={"Retry-After": str(seconds)}, retry_after=seconds)
    session.add_all([SignInRequest(scope=scope, key=key, requested_at=now)
                     for scope, key in keys])
    session.flush()
