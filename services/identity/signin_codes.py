"""SMS verification codes (短信验证码): sign-in, password reset and change of phone number
[003 §1.2] (RELIABILITY S3, S6).

A code is 6 random digits (``secrets``), valid 5 minutes, single use, at most 5 wrong tries;
only its HMAC is stored. A new sign-in or reset code for the same phone replaces the old one.
A phone change belongs to its account: the account's new change codes replace its own older
ones and no one else's, so another account starting a change to the same number cannot
cancel a pending change (the first to confirm gets the number; the other's confirmation is a
409 ``phone-taken``, the unique phone column deciding a race).
Sign-in and reset codes are throttled per phone *and requesting address* (5 an hour, 1 a
minute) and per client address (5 an hour), whether or not the phone has an account, and the
answer is always 202, so nothing tells who is registered. The phone's allowance is not shared
with strangers: anyone may ask for codes to anyone's number, and a shared one let them stop
its owner signing in or resetting by SMS for up to an hour. A number is kept from a flood
from many addresses by a quiet cap instead (10 codes an hour, whoever asks): past it the
request is answered alike (202) and nothing is sent or replaced. A captcha comes first when
``IDENTITY_REQUIRE_CAPTCHA=1`` (production) and after a code was asked for from the address
or for the phone in the hour (``asked_recently``; ``signin_captcha.guard_sms_code``), so a
flood from many addresses costs a captcha per code.

A phone change is throttled per account (3 an hour, 1 a minute, whatever the numbers), its
own phone from the client address and the address, never by the number it names: anyone signed
in can name anyone's number, and starts counted against it would let them stop its owner
signing in or resetting by SMS, and other accounts' changes to it, for up to an hour. It
is kept from a flood by a quiet cap instead (10 change codes an hour, whoever asks): past it
the start is answered alike and its code goes to nobody, as a taken number's always does, so
the cap tells nothing either (``signin_throttle``).

For an account the code leaves through the outbox as ``identity.code.issued`` with the phone
and the code *sealed* (Fernet under ``ECOURT_SMS_KEY``, ``servicekit.sealed``): delivery opens
them and sends the SMS; the broker, the outbox rows and the logs never see either in clear.

Every wrong, expired, used or unknown code is the same 401 ``invalid-code``, and counts as a
failed sign-in attempt in the password throttle (``usecases/throttle.py``: per account — the
phone's account, or the HMAC of a phone without one — and per client address, 5 per 15
minutes): an attempt is reserved before its code is looked at, so while a counter is full the
answer is 429, no code is tried, and a client that keeps failing spends nobody's code.

A change of phone to a number another account uses is answered like any other (202) and its
new-phone code goes to nobody; only registration tells that a phone is taken (a registering
person must know).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from servicekit.db import Database, utcnow
from servicekit.outbox import emit
from servicekit.problems import Problem
from servicekit.sealed import seal, unseal
from servicekit.tokens import SigningKey
from services.identity import domain
from services.identity.models import Account
from services.identity.models_signin import SignInCode
from services.identity.signin_throttle import (
    CHANGE_TARGET,
    PHONE_CHANGE,
    SMS_IP,
    SMS_PHONE_IP,
    SMS_TARGET,
    Key,
    admit,
    allows,
    limited,
    phone_address_key,
    phone_key,
    seen,
)
from services.identity.usecases import sessions, throttle
from services.identity.usecases.accounts import SOURCE, hasher

log = logging.getLogger(__name__)

LOGIN = "login"
RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose, not a secret
CHANGE_OLD = "change_phone_old"
CHANGE_NEW = "change_phone_new"
PUBLIC_PURPOSES = (LOGIN, RESET_PASSWORD)
CHANGE_PURPOSES = (CHANGE_OLD, CHANGE_NEW)
CODE_TTL = timedelta(minutes=5)
MAX_TRIES = 5
EVENT = "identity.code.issued"


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def _digest(code_id: str, code: str, pepper: str) -> str:
    message = f"code:{code_id}:{code.strip()}".encode()
    return hmac.new(pepper.encode(), message, hashlib.sha256).hexdigest()


def _replaced(purpose: str, account_id: str, key: str) -> ColumnElement[bool]:
    """Which live codes a new one replaces: a sign-in or reset code, the phone's; a phone
    change's, the account's own alone (another account's change to the same number is no
    business of this one)."""
    if purpose in CHANGE_PURPOSES:
        return SignInCode.account_id == account_id
    return SignInCode.phone_key == key


def _issue(session: Session, *, account_id: str, purpose: str, phone: str, pepper: str,
           now: datetime, target_sealed: str | None = None, send: bool = True) -> None:
    """Replace the live codes this one supersedes (``_replaced``) with a new one, and emit it
    sealed (with ``send=False`` the code is sent to nobody: it can never be confirmed)."""
    key = phone_key(phone, pepper)
    session.execute(update(SignInCode).where(
        _replaced(purpose, account_id, key), SignInCode.purpose == purpose,
        SignInCode.used_at.is_(None)).values(used_at=now))
    code, code_id = new_code(), str(uuid.uuid4())
    expires_at = now + CODE_TTL
    session.add(SignInCode(id=code_id, account_id=account_id, purpose=purpose, phone_key=key,
                           code_hash=_digest(code_id, code, pepper),
                           target_sealed=target_sealed, attempts=0, created_at=now,
                           expires_at=expires_at))
    if not send:
        return
    emit(session, EVENT, {"account_id": account_id, "purpose": purpose,
                          "phone_sealed": seal(phone, pepper),
                          "code_sealed": seal(code, pepper),
                          "expires_at": expires_at.isoformat()},
         source=SOURCE, subject=account_id)


def _sms_keys(phone: str, client_ip: str, pepper: str) -> list[Key]:
    """What asking for a code to ``phone`` from ``client_ip`` counts against (429 past it):
    the phone's allowance from this address, and the address's."""
    return [(SMS_PHONE_IP, phone_address_key(phone, client_ip, pepper)), (SMS_IP, client_ip)]


def asked_recently(session: Session, phone: str, *, client_ip: str, pepper: str) -> bool:
    """Whether the next code for ``phone`` from ``client_ip`` needs a captcha
    (``signin_captcha.guard_sms_code``): a code was asked for from this address, or for this
    phone from any, within the hour the throttles count — unless the request is over a limit
    already: then it answers 429 at once, and a captcha would only be spent to be told to
    wait. Counted alike for taken and free numbers."""
    now = utcnow()
    return not limited(session, _sms_keys(phone, client_ip, pepper), now) and seen(
        session, [(SMS_IP, client_ip), (SMS_TARGET, phone_key(phone, pepper))], now)


def request_code(db: Database, phone: str, purpose: str, *, client_ip: str,
                 pepper: str) -> int:
    """Send a login or password-reset code when the phone has an active account and its
    quiet cap allows; throttled (429) by the phone from this address and by the address,
    counted either way. Returns the code lifetime in seconds."""
    now = utcnow()
    with db.transaction() as session:
        admit(session, _sms_keys(phone, client_ip, pepper), now)
        capped = not allows(session, (SMS_TARGET, phone_key(phone, pepper)), now)
        account = session.scalars(select(Account).where(Account.phone == phone)).first()
        if account is not None and account.status == domain.ACTIVE and not capped:
            _issue(session, account_id=account.id, purpose=purpose, phone=phone,
                   pepper=pepper, now=now)
    log.info("sms code requested", extra={
        "purpose": purpose, "account_id": account.id if account else None,
        "client_ip": client_ip})
    return int(CODE_TTL.total_seconds())


def _invalid() -> Problem:
    return Problem(401, "invalid-code", "the code is wrong, expired or already used")


@dataclass
class _Check:
    row: SignInCode | None
    ok: bool


def _check(session: Session, *, purpose: str, code: str, pepper: str, now: datetime,
           phone: str | None = None, account_id: str | None = None) -> _Check:
    """Find the live code of a phone (or an account) and purpose and try ``code`` against it,
    counting a wrong try. A right code is marked used."""
    query = select(SignInCode).where(SignInCode.purpose == purpose,
                                     SignInCode.used_at.is_(None))
    if phone is not None:
        query = query.where(SignInCode.phone_key == phone_key(phone, pepper))
    if account_id is not None:
        query = query.where(SignInCode.account_id == account_id)
    row = session.scalars(query.order_by(SignInCode.created_at.desc())
                          .limit(1).with_for_update()).first()
    if row is None or row.expires_at <= now or row.attempts >= MAX_TRIES:
        return _Check(row, False)
    if not hmac.compare_digest(row.code_hash, _digest(row.id, code, pepper)):
        row.attempts += 1
        if row.attempts >= MAX_TRIES:
            row.used_at = now  # spent: ask for a new code
        return _Check(row, False)
    row.used_at = now  # the row is locked (FOR UPDATE; SQLite serialises writers)
    return _Check(row, True)


@dataclass
class _Attempt:
    reserved: list[int]
    account_keys: list[str]

    def succeeded(self, session: Session) -> None:
        throttle.succeeded(session, self.reserved, self.account_keys)


def _attempt(session: Session, *, client_ip: str, pepper: str, phone: str | None = None,
             account_id: str | None = None) -> _Attempt:
    """Reserve a failed attempt against the account (the phone's, or the phone's HMAC when
    it has none, as a password sign-in with that phone would) and the client address before
    any code is tried: 429 (nothing tried, nothing spent) while either counter is full."""
    keys = [account_id] if account_id is not None else []
    if phone is not None:
        owner = session.scalar(select(Account.id).where(Account.phone == phone))
        keys = ([owner] if owner else []) + [throttle.username_key(phone, pepper)]
    reserved = throttle.reserve(session, [(throttle.ACCOUNT, keys[0]), (throttle.IP, client_ip)])
    return _Attempt(reserved, keys)


def _account_for(session: Session, checked: _Check, phone: str) -> Account | None:
    """The account a right code proves, as long as it still owns the phone."""
    if not checked.ok or checked.row is None:
        return None
    account = session.get(Account, checked.row.account_id)
    return account if account is not None and account.phone == phone else None


def sign_in(db: Database, key: SigningKey, phone: str, code: str, *, client_ip: str,
            pepper: str) -> sessions.TokenPair:
    """``POST /tokens/sms``: a login code for a token pair, as a password sign-in gives."""
    now, failure, pair = utcnow(), None, None
    with db.transaction() as session:
        attempt = _attempt(session, client_ip=client_ip, pepper=pepper, phone=phone)
        account = _account_for(session, _check(session, purpose=LOGIN, code=code,
                                               pepper=pepper, now=now, phone=phone), phone)
        if account is None:
            failure = _invalid()
        else:
            attempt.succeeded(session)  # a right code: no failure, whatever the status
            if account.status != domain.ACTIVE:
                failure = Problem(403, "account-disabled", "this account is disabled")
            else:
                pair = sessions.start_session(session, key, account, "sms-code")
    if failure is not None or pair is None:
        log.warning("sms sign-in refused", extra={"client_ip": client_ip})
        raise failure or _invalid()
    log.info("signed in by sms code", extra={"account_id": account.id,  # type: ignore[union-attr]
                                             "client_ip": client_ip})
    return pair


def reset_password(db: Database, phone: str, code: str, new_password: str, *,
                   client_ip: str, pepper: str) -> None:
    """``POST /password-resets``: set a new password and end every sign-in of the account."""
    now, failure = utcnow(), None
    with db.transaction() as session:
        attempt = _attempt(session, client_ip=client_ip, pepper=pepper, phone=phone)
        account = _account_for(session, _check(session, purpose=RESET_PASSWORD, code=code,
                                               pepper=pepper, now=now, phone=phone), phone)
        if account is None:
            failure = _invalid()
        else:
            attempt.succeeded(session)
            account.password_hash = hasher.hash(new_password)
            ended = sessions.revoke_account_sessions(session, account.id, "password-reset")
    if failure is not None:
        log.warning("password reset refused", extra={"client_ip": client_ip})
        raise failure
    log.info("password reset by sms code", extra={
        "account_id": account.id, "client_ip": client_ip,  # type: ignore[union-attr]
        "sessions_ended": ended})


def _admit_change(session: Session, account: Account, new_phone: str, *, client_ip: str,
                  pepper: str, now: datetime) -> bool:
    """Throttle a start (429) by the account, its own phone and the client address, and
    say whether the new number's quiet cap lets its code go out. Nothing here depends on
    whether the new number is taken, nor counts against its sign-in and reset allowance."""
    admit(session, [(PHONE_CHANGE, account.id), *_sms_keys(account.phone, client_ip, pepper)],
          now)
    return allows(session, (CHANGE_TARGET, phone_key(new_phone, pepper)), now)


def start_phone_change(db: Database, account_id: str, new_phone: str, *, client_ip: str,
                       pepper: str) -> int:
    """``POST /accounts/me/phone-change``: one code to the old phone, one to the new.

    Throttled first, and a number another account uses is answered as a free one (202, the
    old phone's code sent; the new phone's code sent to nobody), so that no signed-in user
    can learn who is registered; ``confirm_phone_change`` refuses a taken number."""
    now = utcnow()
    with db.transaction() as session:
        account = session.get(Account, account_id)
        if account is None or account.status != domain.ACTIVE:
            raise Problem(403, "account-disabled", "this account is disabled")
        if account.phone is None:
            raise Problem(409, "no-phone", "this account has no phone to change")
        if new_phone == account.phone:
            raise Problem(409, "phone-unchanged", "this is already the account's phone")
        capped = not _admit_change(session, account, new_phone, client_ip=client_ip,
                                   pepper=pepper, now=now)
        taken = session.scalar(select(Account.id).where(Account.phone == new_phone))
        _issue(session, account_id=account.id, purpose=CHANGE_OLD, phone=account.phone,
               pepper=pepper, now=now)
        _issue(session, account_id=account.id, purpose=CHANGE_NEW, phone=new_phone,
               pepper=pepper, now=now, target_sealed=seal(new_phone, pepper),
               send=taken is None and not capped)
    log.info("phone change started", extra={"account_id": account_id, "client_ip": client_ip})
    return int(CODE_TTL.total_seconds())


def confirm_phone_change(db: Database, account_id: str, old_code: str, new_code_: str, *,
                         client_ip: str, pepper: str) -> Account:
    """``POST /accounts/me/phone-change/confirm``: both codes right → the new phone."""
    now, failure = utcnow(), None
    try:
        with db.transaction() as session:
            attempt = _attempt(session, client_ip=client_ip, pepper=pepper,
                               account_id=account_id)
            old = _check(session, purpose=CHANGE_OLD, code=old_code, pepper=pepper, now=now,
                         account_id=account_id)
            new = _check(session, purpose=CHANGE_NEW, code=new_code_, pepper=pepper, now=now,
                         account_id=account_id)
            account = session.get(Account, account_id)
            if not (old.ok and new.ok) or account is None or new.row is None \
                    or new.row.target_sealed is None or old.row is None \
                    or old.row.phone_key != phone_key(account.phone, pepper):
                failure = _invalid()
                if old.ok and old.row is not None:  # one right code alone is not used up
                    old.row.used_at = None
                if new.ok and new.row is not None:
                    new.row.used_at = None
            else:
                attempt.succeeded(session)
                phone = unseal(new.row.target_sealed, pepper)
                taken = session.scalar(select(Account.id).where(
                    Account.phone == phone, Account.id != account_id))
                if taken is not None:
                    failure = Problem(409, "phone-taken", "another account uses this phone")
                else:
                    account.phone = phone
                    session.flush()
    except IntegrityError as exc:  # taken between the check and the commit
        raise Problem(409, "phone-taken", "another account uses this phone") from exc
    if failure is not None:
        log.warning("phone change refused", extra={"account_id": account_id,
                                                   "client_ip": client_ip})
        raise failure
    log.info("phone changed", extra={"account_id": account_id, "client_ip": client_ip})
    return account  # type: ignore[return-value]
