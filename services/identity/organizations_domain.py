"""Rules for legal persons and lawyers, as plain Python (no I/O here).

* the unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters of a 31-character
  alphabet, the last a check character. A code whose check character does not match is not
  refused (the registry's data is sometimes older than the rule, and a typo is the reviewer's
  call): the registration is flagged for the reviewer. A code of the wrong length or alphabet
  is refused.
* a lawyer's practising certificate number (执业证号): 17 digits.
* review deadlines: five working days; what the reviewer's list says about the time left.
"""

from __future__ import annotations

import re
from datetime import datetime

from servicekit.workdays import add_workdays, local_date

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_LICENSE_NO = re.compile(r"\d{17}", re.ASCII)  # fullmatch: 0-9 only, no trailing newline

ORGANIZATION = "organization"
PENDING_REVIEW = "pending_review"  # an organization account before its court approves it
REJECTED = "rejected"

PENDING = "pending"
APPROVED = "approved"
VERIFIED = "verified"
REVIEW_STATUSES = (PENDING, APPROVED, REJECTED)
LAWYER_STATUSES = (PENDING, VERIFIED, REJECTED)
ONLINE = "online"
OFFLINE = "offline"
REVIEW_WORKDAYS = 5


def normalize_uscc(value: str) -> str:
    return value.strip().upper()


def uscc_well_formed(value: str) -> bool:
    """18 characters, each from the GB 32100 alphabet (no I, O, Z, S, V)."""
    return len(value) == 18 and all(c in USCC_ALPHABET for c in value)


def uscc_check_char(body: str) -> str:
    """The check character for the first 17 characters of a code."""
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(body, _USCC_WEIGHTS, strict=True))
    check = 31 - total % 31
    return USCC_ALPHABET[0 if check == 31 else check]


def uscc_check_ok(value: str) -> bool:
    """A well-formed code whose 18th character is its GB 32100 check character."""
    return uscc_well_formed(value) and uscc_check_char(value[:17]) == value[17]


def license_no_valid(value: str) -> bool:
    return bool(_LICENSE_NO.fullmatch(value))


def review_deadline(submitted_at: datetime) -> datetime:
    return add_workdays(submitted_at, REVIEW_WORKDAYS)


def remaining(deadline: datetime, now: datetime) -> tuple[int, str]:
    """Days left until the deadline (Beijing calendar days; negative when overdue) and the
    label the review list shows: ``剩余N天`` or ``超过N天``."""
    days = (local_date(deadline) - local_date(now)).days
    return days, (f"剩余{days}天" if days >= 0 else f"超过{-days}天")
