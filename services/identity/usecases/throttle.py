"""Throttling password attempts (RELIABILITY S3), in the database so every worker agrees.

Two counters, each ``MAX_FAILURES`` per ``FAILURE_WINDOW`` (a sliding window):

* per account: keyed by the account id when the username names one (so signing in by phone
  and by ID number count together), else by an HMAC of the username (so an unknown username
  is throttled exactly like a known one and throttling tells nothing about who is
  registered, while no unknown ID number is stored in clear);
* per client address;

and one for registration (``REGISTRATION``, per client address): a registration refused
because the phone or ID number is taken counts as a failure, so the 409s cannot be used to
look up who is registered without limit (``usecases/accounts.register_individual``).

An attempt is *reserved* before the password is checked: a row is written for each counter
in a short transaction that first takes a per-key lock (PostgreSQL advisory lock; SQLite's
``BEGIN IMMEDIATE`` already serialises writers), so a burst of parallel guesses cannot all
slip in while argon2 runs. A wrong password leaves the rows as failures; a right one deletes
the reservation and resets the account's counter. While a counter is full every attempt,
with the right password too, is refused with 429 and ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from servicekit.db import utcnow
from servicekit.problems import Problem
from services.identity.domain import FAILURE_WINDOW, MAX_FAILURES, retry_after
from services.identity.models import LoginFailure

ACCOUNT = "account"
IP = "ip"
REGISTRATION = "register"

Key = tuple[str, str]


def username_key(username: str, pepper: str) -> str:
    digest = hmac.new(pepper.encode(), b"login:" + username.encode(), hashlib.sha256)
    return "u:" + digest.hexdigest()


def _lock(session: Session, keys: list[Key]) -> None:
    if session.get_bind().dialect.name != "postgresql":
        return
    for scope, key in sorted(keys):  # one order everywhere: no deadlocks
        lock_id = int.from_bytes(hashlib.sha256(f"{scope}:{key}".encode()).digest()[:8],
                                 "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})


def _refusal(session: Session, keys: list[Key], now: datetime, what: str) -> Problem | None:
    """The 429 to answer when a counter of ``keys`` is full at ``now``, else None."""
    waits = []
    for scope, key in keys:
        times = session.scalars(select(LoginFailure.failed_at).where(
            LoginFailure.scope == scope, LoginFailure.key == key,
            LoginFailure.failed_at > now - FAILURE_WINDOW)).all()
        wait = retry_after(times, now)
        if wait is not None:
            waits.append(wait)
    if not waits:
        return None
    seconds = max(waits)
    return Problem(429, "too-many-attempts", f"too many {what}; try again in {seconds} seconds",
                   headers={"Retry-After": str(seconds)}, retry_after=seconds,
                   limit=MAX_FAILURES, window_seconds=int(FAILURE_WINDOW.total_seconds()))


def check(session: Session, keys: list[Key], now: datetime | None = None, *,
          what: str = "failed sign-in attempts") -> None:
    """Refuse with 429 when a counter is already full, writing and locking nothing: a cheap
    look before slow work (an argon2 hash) that ``reserve`` would refuse anyway. Not a
    reservation: only ``reserve``, under its lock, keeps a parallel burst within the limit."""
    problem = _refusal(session, keys, now or utcnow(), what)
    if problem is not None:
        raise problem


def reserve(session: Session, keys: list[Key], now: datetime | None = None, *,
            what: str = "failed sign-in attempts") -> list[int]:
    """Refuse with 429 (its detail naming ``what`` failed) when a counter is full; else write
    one pending failure per counter and return their row ids (to release on success)."""
    now = now or utcnow()
    _lock(session, keys)
    session.execute(delete(LoginFailure).where(LoginFailure.failed_at <= now - FAILURE_WINDOW))
    check(session, keys, now, what=what)
    rows = [LoginFailure(scope=scope, key=key, failed_at=now) for scope, key in keys]
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


def succeeded(session: Session, reserved: list[int], account_keys: list[str]) -> None:
    """The password was right: this attempt was no failure, and the account starts afresh."""
    session.execute(delete(LoginFailure).where(LoginFailure.id.in_(reserved)))
    session.execute(delete(LoginFailure).where(LoginFailure.scope == ACCOUNT,
                                               LoginFailure.key.in_(account_keys)))
