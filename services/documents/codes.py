"""Anti-counterfeit codes (防伪码) printed on every issued document.

Decisions written down here:

* **Unguessable.** 19 symbols drawn with ``secrets`` from a 32-symbol alphabet: 95 random
  bits, far beyond the 80 a public, rate-limited lookup needs.
* **Readable.** Crockford's base-32 alphabet (digits and letters without I, L, O, U). On input,
  case is ignored, ``I``/``L`` read as ``1`` and ``O`` as ``0``, and spaces and hyphens are
  dropped, so a code read aloud or typed from paper still resolves.
* **A check character.** The 20th symbol is the Luhn mod-N check (N = 32) over the 19 body
  symbols. It catches *every* single-symbol substitution (doubling is a permutation of 0..31
  for even N) and most adjacent transpositions, so a typo answers "check the code" rather
  than "no such document". Crockford's own mod-37 check needs the symbols ``* ~ $ = U``,
  which are awkward in URLs and QR codes; Luhn mod 32 stays inside the alphabet.
* **Canonical form** (stored, unique): 20 symbols, upper case, no separators.
  **Display form** (printed, in events and URLs): five groups of four joined by ``-``.
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
N = len(ALPHABET)
BODY_LENGTH = 19
LENGTH = BODY_LENGTH + 1
GROUP = 4
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
_ALIASES = str.maketrans({"I": "1", "L": "1", "O": "0"})
_SEPARATORS = re.compile(r"[\s\-_\u2010-\u2015\u00b7.]+")
_SYMBOL = "[0-9A-HJKMNP-TV-Z]"
#: a grouped code inside text (extracted PDF text may put spaces around the hyphens)
IN_TEXT = re.compile(rf"(?<![0-9A-Z]){_SYMBOL}{{4}}(?:\s*-\s*{_SYMBOL}{{4}}){{4}}(?![0-9A-Z])")

assert N == 32 and len(set(ALPHABET)) == N


class InvalidCode(ValueError):
    """Not one of our codes; ``hint`` says what to check (safe to show to anyone)."""

    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.hint = hint


def _fold(addend: int) -> int:
    return addend // N + addend % N


def check_symbol(body: str) -> str:
    """The Luhn mod-32 check symbol of ``body`` (canonical symbols)."""
    total, double = 0, True
    for ch in reversed(body):
        value = _VALUE[ch]
        total += _fold(value * 2) if double else value
        double = not double
    return ALPHABET[(N - total % N) % N]


def checks(code: str) -> bool:
    """Whether a canonical code's last symbol is the right check symbol."""
    total, double = 0, False
    for ch in reversed(code):
        value = _VALUE[ch]
        total += _fold(value * 2) if double else value
        double = not double
    return total % N == 0


def new_code() -> str:
    """A fresh canonical code: 19 random symbols (95 bits) and the check symbol."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    return body + check_symbol(body)


def display(code: str) -> str:
    """``7K3M9QXR2HDW5TNBP8GA`` → ``7K3M-9QXR-2HDW-5TNB-P8GA``."""
    return "-".join(code[i:i + GROUP] for i in range(0, len(code), GROUP))


def parse(raw: str) -> str:
    """The canonical form of a code as typed, scanned or printed; raises ``InvalidCode``."""
    text = _SEPARATORS.sub("", raw or "").upper().translate(_ALIASES)
    if len(text) != LENGTH or any(ch not in _VALUE for ch in text):
        raise InvalidCode(f"an anti-counterfeit code has {LENGTH} letters and digits "
                          f"(e.g. XXXX-XXXX-XXXX-XXXX-XXXX): check what you typed")
    if not checks(text):
        raise InvalidCode("the code's check character does not match: one character is "
                          "probably mistyped, compare it with the document")
    return text


def find_in(text: str) -> list[str]:
    """Every valid code (canonical) written in display form inside ``text``."""
    found: list[str] = []
    for match in IN_TEXT.finditer((text or "").upper()):
        try:
            code = parse(match.group(0))
        except InvalidCode:
            continue
        if code not in found:
            found.append(code)
    return found
