"""Image captchas (图形验证码) for password sign-in and SMS codes [003 §1.2].

``POST /captchas`` draws 5 characters from an alphabet without look-alikes (no 0/O, 1/I/L,
2/Z, 5/S, 8/B) with Pillow — each glyph rotated and jittered, over noise lines and dots — and
stores only an HMAC of the answer. A captcha lives 2 minutes and is single use: the first
check deletes it, right or wrong.

Password sign-in requires one once the username or the client address has a failed (or
in-flight) attempt in the current throttle window, and always when
``IDENTITY_REQUIRE_CAPTCHA=1`` (production deploys set it; the embedded default is off so a
first-run ``curl`` works). ``POST /sms-codes`` requires one the same way, always under that
setting, else once a code was asked for from the client address or for the phone in the hour
(``guard_sms_code``). ``IDENTITY_CAPTCHA_AFTER_FAILURE=0`` turns both after-activity rules
off (never in production). Tests fix the text with ``CaptchaService(alphabet="A")`` in
``rt.extras["captcha_service"]``; answers never leave the service.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import random
import secrets
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from PIL import Image, ImageDraw, ImageFilter, ImageFont
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from servicekit.db import Database, utcnow
from servicekit.problems import Problem
from servicekit.service import Runtime
from services.identity import domain, organizations, signin_codes
from services.identity.models import Account, LoginFailure
from services.identity.models_signin import Captcha
from services.identity.signin_throttle import CAPTCHA_IP, admit
from services.identity.usecases import throttle

REQUIRE_ENV = "IDENTITY_REQUIRE_CAPTCHA"
AFTER_FAILURE_ENV = "IDENTITY_CAPTCHA_AFTER_FAILURE"
TTL = timedelta(minutes=2)
ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
LENGTH = 5


class CaptchaService:
    """Chooses a captcha's text and draws it. ``rng`` and ``alphabet`` are injectable so a
    test knows the answer; production uses ``secrets.SystemRandom``."""

    def __init__(self, rng: random.Random | None = None, alphabet: str = ALPHABET,
                 length: int = LENGTH) -> None:
        self.rng = rng or secrets.SystemRandom()
        self.alphabet = alphabet
        self.length = length

    def text(self) -> str:
        return "".join(self.rng.choice(self.alphabet) for _ in range(self.length))

    def png(self, text: str, width: int = 150, height: int = 50) -> bytes:
        rng = self.rng
        image = Image.new("RGB", (width, height), (rng.randint(235, 255),) * 3)
        draw = ImageDraw.Draw(image)
        for _ in range(6):  # noise lines
            draw.line([(rng.randint(0, width), rng.randint(0, height)),
                       (rng.randint(0, width), rng.randint(0, height))],
                      fill=_colour(rng, 120, 200), width=rng.randint(1, 2))
        font = ImageFont.load_default(size=30)
        step = (width - 20) // max(1, len(text))
        for i, char in enumerate(text):
            glyph = Image.new("RGBA", (40, 44), (0, 0, 0, 0))
            ImageDraw.Draw(glyph).text((8, 2), char, font=font, fill=_colour(rng, 10, 110))
            glyph = glyph.rotate(rng.uniform(-30, 30), resample=Image.Resampling.BICUBIC,
                                 expand=False)
            image.paste(glyph, (10 + i * step + rng.randint(-3, 3), rng.randint(0, 8)), glyph)
        for _ in range(width * height // 25):  # noise dots
            draw.point((rng.randint(0, width - 1), rng.randint(0, height - 1)),
                       fill=_colour(rng, 0, 255))
        image = image.filter(ImageFilter.SMOOTH)
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()


def _colour(rng: random.Random, low: int, high: int) -> tuple[int, int, int]:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def service_of(rt: Runtime) -> CaptchaService:
    return rt.extras.setdefault("captcha_service", CaptchaService())  # type: ignore[return-value]


def always_required(rt: Runtime) -> bool:
    if "require_captcha" in rt.extras:
        return bool(rt.extras["require_captcha"])
    return os.environ.get(REQUIRE_ENV, "") == "1"


def after_failure(rt: Runtime) -> bool:
    """On unless ``IDENTITY_CAPTCHA_AFTER_FAILURE=0`` (or ``rt.extras``) turns it off."""
    if "captcha_after_failure" in rt.extras:
        return bool(rt.extras["captcha_after_failure"])
    return os.environ.get(AFTER_FAILURE_ENV, "1") != "0"


def _digest(captcha_id: str, answer: str, pepper: str) -> str:
    message = f"captcha:{captcha_id}:{answer.strip().upper()}".encode()
    return hmac.new(pepper.encode(), message, hashlib.sha256).hexdigest()


def create(db: Database, service: CaptchaService, *, client_ip: str,
           pepper: str) -> tuple[str, bytes, int]:
    """A new captcha: its id, its PNG and its lifetime in seconds."""
    text, captcha_id, now = service.text(), str(uuid.uuid4()), utcnow()
    with db.transaction() as session:
        admit(session, [(CAPTCHA_IP, client_ip)], now)
        session.execute(delete(Captcha).where(Captcha.expires_at <= now))
        session.add(Captcha(id=captcha_id, answer_hash=_digest(captcha_id, text, pepper),
                            created_at=now, expires_at=now + TTL))
    return captcha_id, service.png(text), int(TTL.total_seconds())


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def check(db: Database, captcha_id: str, answer: str, *, pepper: str) -> None:
    """Consume the captcha; 401 ``captcha-invalid`` unless it exists, is unexpired and the
    answer (case-insensitive) is right. The row is locked before it is deleted: a second
    check of the same captcha at once waits, then finds it gone (both found it, both deleted
    it, and both passed)."""
    with db.transaction() as session:
        row = session.get(Captcha, captcha_id, with_for_update=True)
        if row is not None:
            session.delete(row)
    ok = (row is not None and row.expires_at > utcnow()
          and hmac.compare_digest(row.answer_hash, _digest(captcha_id, answer, pepper)))
    if not ok:
        raise Problem(401, "captcha-invalid",
                      "the captcha is wrong, expired or already used; request a new one")


def _has_recent_failure(session: Session, username: str, client_ip: str, pepper: str) -> bool:
    """A failed (or in-flight) attempt on the username's account or from the address in the
    throttle window — unless a counter is already full: then the sign-in answers 429 at once
    and a captcha would only make the client solve one to be told to wait."""
    account_id = session.scalar(select(Account.id).where(
        or_(Account.phone == username, Account.id_number == username)))
    if account_id is None:  # a legal person signs in with its USCC
        organization = organizations.account_by_uscc(session, username)
        account_id = organization.id if organization else None
    account_keys = [throttle.username_key(username, pepper)] + (
        [account_id] if account_id else [])
    rows = session.execute(select(LoginFailure.scope, LoginFailure.key).where(
        LoginFailure.failed_at > utcnow() - domain.FAILURE_WINDOW,
        or_((LoginFailure.scope == throttle.ACCOUNT) & LoginFailure.key.in_(account_keys),
            (LoginFailure.scope == throttle.IP) & (LoginFailure.key == client_ip)),
    )).all()
    counts = Counter(tuple(row) for row in rows)
    if any(n >= domain.MAX_FAILURES for n in counts.values()):
        return False
    return bool(rows)


def guard(rt: Runtime, captcha_id: str | None, answer: str | None, *,
          recently: Callable[[Session], bool], send_with: str) -> None:
    """Before what a captcha protects: a captcha given is always checked (and used up); none
    given is refused with 400 ``captcha-required`` when ``IDENTITY_REQUIRE_CAPTCHA=1`` or,
    unless ``after_failure`` is off, ``recently`` (read in its own transaction) says so.
    Either refusal comes before anything else is read, counted or sent."""
    if captcha_id or answer:
        check(rt.db, captcha_id or "", answer or "", pepper=rt.settings.service_secret)
        return
    required = always_required(rt)
    if not required and after_failure(rt):
        with rt.db.transaction() as session:
            required = recently(session)
    if required:
        raise Problem(400, "captcha-required",
                      "solve a captcha (POST /captchas) and send captcha_id and "
                      f"captcha_answer with the {send_with}")


def guard_password_login(rt: Runtime, username: str, client_ip: str,
                         captcha_id: str | None, answer: str | None) -> None:
    """A captcha before a password is checked: always in production, else after a failed
    attempt on the username's account or from the address (``_has_recent_failure``)."""
    pepper = rt.settings.service_secret
    guard(rt, captcha_id, answer, send_with="password",
          recently=lambda session: _has_recent_failure(
              session, domain.normalize_username(username), client_ip, pepper))


def guard_sms_code(rt: Runtime, phone: str, client_ip: str, captcha_id: str | None,
                   answer: str | None) -> None:
    """A captcha before an SMS code is sent (图形验证码, then 获取短信验证码): always in
    production, else once a code was asked for from the address or for the phone in the hour
    (``signin_codes.asked_recently``): the first code from a fresh address needs none."""
    pepper = rt.settings.service_secret
    guard(rt, captcha_id, answer, send_with="phone",
          recently=lambda session: signin_codes.asked_recently(
              session, phone, client_ip=client_ip, pepper=pepper))
