"""identity's rules: what a valid registration is (no I/O here)."""

from __future__ import annotations

import re

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_MOBILE = re.compile(r"^1[3-9]\d{9}$")


def id_number_valid(value: str) -> bool:
    """A mainland resident ID number: 17 digits and the GB 11643 check character."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _WEIGHTS, strict=True))
    return _CHECK[total % 11] == value[17].upper()


def mobile_valid(value: str) -> bool:
    return bool(_MOBILE.match(value))
