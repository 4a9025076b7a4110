"""identity's rules, as plain Python (no I/O here): what a valid registration or staff member
is, what an access token says, and when password attempts are throttled."""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from servicekit.roles import STAFF_ROLES

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
#: a mainland mobile number (the API's specs show the same pattern)
MOBILE_PATTERN = r"^1[3-9]\d{9}$"
#: a court code (法院代字) such as 粤01, 粤0104, 京73 or 最高法: no spaces, no separators
COURT_PATTERN = r"^[^\s/,;]{2,20}$"

ACCESS_TOKEN_TTL = timedelta(minutes=15)
REFRESH_TOKEN_TTL = timedelta(days=14)
#: password failures allowed per account and per client address within the window (S3)
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)

INDIVIDUAL = "individual"
STAFF = "staff"
ACTIVE = "active"
DISABLED = "disabled"


# Input is checked with ``fullmatch``: with ``re.match`` the ``$`` also matches before a final
# newline, so "13800000000\n" passed (and overflowed the 11-character column). The mobile
# pattern is ASCII-only, as ``\d`` is in the spec's ECMA-262 regex (in a Python str pattern
# it takes any Unicode digit); the court pattern's ``\s`` stays Unicode, as in ECMA-262.
_MOBILE = re.compile(MOBILE_PATTERN, re.ASCII)
_COURT = re.compile(COURT_PATTERN)


def id_number_valid(value: str) -> bool:
    """A mainland resident ID number: 17 digits and the GB 11643 check character."""
    if len(value) != 18 or not (value[:17].isascii() and value[:17].isdigit()):
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _WEIGHTS, strict=True))
    return _CHECK[total % 11] == value[17].upper()


def mobile_valid(value: str) -> bool:
    return bool(_MOBILE.fullmatch(value))


def court_code_valid(value: str) -> bool:
    return bool(_COURT.fullmatch(value))


def normalize_username(username: str) -> str:
    """A username is a mobile number or an ID number; an ID number's ``x`` is ``X``."""
    return username.strip().upper()


def staff_roles_problem(roles: Sequence[str]) -> str | None:
    """Why these roles cannot be given to a staff member, or None when they can."""
    if not roles:
        return "at least one role is required"
    unknown = sorted(set(roles) - STAFF_ROLES)
    if unknown:
        return f"not a court staff role: {', '.join(unknown)}"
    if len(set(roles)) != len(roles):
        return "a role is listed twice"
    return None


def access_claims(*, account_id: str, kind: str, roles: list[str], court: str | None,
                  department: str | None, session_id: str) -> dict[str, Any]:
    """What an access token says: who (``sub``), what kind of account, which roles; for
    court staff also their court and department. ``sid`` names the sign-in (the refresh
    token family) so a session can be told apart from another of the same account."""
    claims: dict[str, Any] = {"sub": account_id, "roles": roles, "kind": kind,
                              "sid": session_id, "jti": secrets.token_hex(16)}
    if kind == STAFF:
        claims["court"] = court
        claims["department"] = department
    return claims


def new_refresh_token() -> str:
    """An opaque refresh token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """How a refresh token is stored: its SHA-256. The token is 256 random bits, so a fast
    hash is enough (nothing to brute-force), and lookups stay one indexed equality."""
    return hashlib.sha256(token.encode()).hexdigest()


def retry_after(failures: Sequence[datetime], now: datetime,
                limit: int = MAX_FAILURES, window: timedelta = FAILURE_WINDOW) -> int | None:
    """Seconds until one more attempt is allowed, or None when it is allowed now.

    ``failures`` are the failure times inside the window. An attempt is allowed while fewer
    than ``limit`` failures are in the window; the one that must age out first is the
    ``limit``-th newest."""
    recent = sorted(t for t in failures if t > now - window)
    if len(recent) < limit:
        return None
    frees_at = recent[-limit] + window
    return max(1, math.ceil((frees_at - now).total_seconds()))
