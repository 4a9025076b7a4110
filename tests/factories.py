"""Plain factory functions for test data (valid ID numbers, unique mobiles)."""

from __future__ import annotations

import itertools
import random

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_counter = itertools.count(random.randrange(10_000, 90_000))


def id_number() -> str:
    """A fresh ID-card number with a valid GB 11643 check character."""
    body = f"440106199{random.randrange(0, 10)}0101{next(_counter) % 1000:03d}"
    body = body[:17]
    total = sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True))
    return body + _CHECK[total % 11]


#: the last four digits of each new mobile, in turn: what stays of a number once masked
#: (``138****1234``) is then unique in a test process, so a test that finds "its" SMS in the
#: development sink by the masked number never takes another test's code (two random numbers
#: shared a masked form now and then, and a password reset read someone else's code)
_MOBILE_ENDS = itertools.count(random.randrange(10_000))


def mobile() -> str:
    return f"138{random.randrange(1_000, 10_000)}{next(_MOBILE_ENDS) % 10_000:04d}"


def individual(**overrides: str) -> dict[str, str]:
    return {"name": "张三", "id_number": id_number(), "phone": mobile(),
            "password": "correct-horse-battery", **overrides}


_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc() -> str:
    """A fresh unified social credit code with a valid GB 32100 check character."""
    body = "91440101" + "".join(random.choice(_USCC_ALPHABET[:10]) for _ in range(9))
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(body, _USCC_WEIGHTS, strict=True))
    return body + _USCC_ALPHABET[(31 - total % 31) % 31]
