"""Sign-in sessions: password login, refresh-token rotation with reuse detection, sign-out.

A sign-in starts a *family* of refresh tokens. Each refresh exchanges the presented token for
a new pair and marks it rotated; presenting a rotated token again means it was copied, so the
whole family (every ancestor and descendant) is revoked and both holders must sign in again.
Tokens are stored only as SHA-256 digests. Disabling an account revokes its families at once;
its access tokens run out within ``ACCESS_TOKEN_TTL`` (RELIABILITY S5).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from servicekit import audit
from servicekit.db import Database, utcnow
from servicekit.problems import Problem
from servicekit.tokens import SigningKey
from services.identity import domain, organizations
from services.identity.models import Account, RefreshToken
from services.identity.models_signin import QR_CONFIRMED, QR_EXPIRED, QrTicket
from services.identity.usecases import throttle
from services.identity.usecases.accounts import DUMMY_HASH, hasher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 - the scheme, not a secret


def _access_token(key: SigningKey, account: Account, family_id: str) -> str:
    claims = domain.access_claims(account_id=account.id, kind=account.kind,
                                  roles=account.role_list, court=account.court,
                                  department=account.department, session_id=family_id)
    return key.sign(claims, ttl=int(domain.ACCESS_TOKEN_TTL.total_seconds()))


def _new_refresh(session: Session, account_id: str, family_id: str,
                 parent_id: str | None) -> str:
    token, now = domain.new_refresh_token(), utcnow()
    session.add(RefreshToken(id=str(uuid.uuid4()), family_id=family_id, parent_id=parent_id,
                             account_id=account_id, token_hash=domain.token_digest(token),
                             issued_at=now, expires_at=now + domain.REFRESH_TOKEN_TTL))
    return token


def _revoke(session: Session, reason: str, *where: object) -> int:
    """Revoke the live tokens ``where`` says. The rows are locked first and updated by a
    second statement: a refresh in flight holds the row of the token it exchanges, so the
    lock waits for it, and the UPDATE's snapshot, taken after, sees the token it handed out
    (in one statement, that token came after its snapshot and stayed live)."""
    session.execute(select(RefreshToken.id).where(
        RefreshToken.revoked_at.is_(None), *where)  # type: ignore[arg-type]
        .order_by(RefreshToken.id).with_for_update())
    result = session.execute(update(RefreshToken).where(
        RefreshToken.revoked_at.is_(None), *where).values(  # type: ignore[arg-type]
        revoked_at=utcnow(), revoked_reason=reason))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def revoke_account_sessions(session: Session, account_id: str, reason: str) -> int:
    """End every sign-in of an account (disabled, password changed...), including the one a
    QR ticket it confirmed still holds for the web's next poll: that ticket expires, so a
    browser the account's phone let in before a password reset is not signed in after it."""
    session.execute(update(QrTicket).where(
        QrTicket.account_id == account_id, QrTicket.status == QR_CONFIRMED).values(
        status=QR_EXPIRED))
    return _revoke(session, reason, RefreshToken.account_id == account_id)


def login(db: Database, key: SigningKey, username: str, password: str, *, client_ip: str,
          pepper: str) -> TokenPair:
    username = domain.normalize_username(username)
    with db.transaction() as session:
        account = session.scalars(select(Account).where(
            or_(Account.phone == username, Account.id_number == username))).first() \
            or organizations.account_by_uscc(session, username)  # legal persons: their USCC
        account_key = account.id if account else throttle.username_key(username, pepper)
        reserved = throttle.reserve(session, [(throttle.ACCOUNT, account_key),
                                              (throttle.IP, client_ip)])
    try:
        hasher.verify(account.password_hash if account else DUMMY_HASH, password)
        if account is None:
            raise VerificationError("no such account")
    except (VerificationError, InvalidHashError) as exc:
        log.warning("sign-in failed: wrong password", extra={
            "account_id": account.id if account else None, "client_ip": client_ip})
        if account is not None:
            audit.note_denied(f"account:{account.id}")
        raise Problem(401, "invalid-credentials", "wrong username or password") from exc
    family_id, checked = str(uuid.uuid4()), account.password_hash
    with db.transaction() as session:
        throttle.succeeded(session, reserved,
                           [account.id, throttle.username_key(username, pepper)])
        account = session.get(Account, account.id, with_for_update=True) or account
        if account.password_hash != checked:  # rolled back: the attempt stays a failure
            raise _password_changed(account, client_ip)
        active = account.status == domain.ACTIVE  # the status as of now
        if active:
            if hasher.check_needs_rehash(account.password_hash):
                account.password_hash = hasher.hash(password)
            session.execute(delete(RefreshToken).where(
                RefreshToken.account_id == account.id, RefreshToken.expires_at < utcnow()))
            refresh = _new_refresh(session, account.id, family_id, None)
            signed_in(session, account, "password", family_id)
    if not active:
        log.warning("sign-in refused: account %s", account.status,
                    extra={"account_id": account.id})
        audit.note_denied(f"account:{account.id}")
        raise organizations.sign_in_refusal(account)  # disabled, or an organization in review
    log.info("signed in", extra={"account_id": account.id, "client_ip": client_ip,
                                 "session_id": family_id})
    return TokenPair(_access_token(key, account, family_id), refresh,
                     int(domain.ACCESS_TOKEN_TTL.total_seconds()))


def _password_changed(account: Account, client_ip: str) -> Problem:
    """The password was reset (or changed) after this sign-in checked it: the reset ended
    every sign-in, and this one is refused like the wrong password it now is. (It used to
    start a session on the old password after the reset, and to write the old password,
    rehashed, back over the new one.) The account is locked while this is decided, so a
    reset committing later ends the session this sign-in starts."""
    log.warning("sign-in refused: the password changed meanwhile", extra={
        "account_id": account.id, "client_ip": client_ip})
    audit.note_denied(f"account:{account.id}")
    return Problem(401, "invalid-credentials", "wrong username or password")


def signed_in(session: Session, account: Account, method: str, family_id: str) -> None:
    """The audit trail's entry of a successful sign-in (refusals are recorded by the web layer
    as they are answered)."""
    audit.record(session, "auth.signed-in", subject=f"account:{account.id}",
                 detail={"method": method, "session": family_id})


def start_session(session: Session, key: SigningKey, account: Account,
                  method: str) -> TokenPair:
    """A new sign-in (refresh-token family) for an account proven another way (``method``:
    an SMS code, a QR confirmation), in the caller's transaction; the caller checks the
    account is active."""
    family_id = str(uuid.uuid4())
    refresh_token = _new_refresh(session, account.id, family_id, None)
    signed_in(session, account, method, family_id)
    return TokenPair(_access_token(key, account, family_id), refresh_token,
                     int(domain.ACCESS_TOKEN_TTL.total_seconds()))


def refresh(db: Database, key: SigningKey, token: str) -> TokenPair:
    """Exchange a refresh token for a new pair; a rotated token presented again revokes its
    family. Problems are raised after the transaction, so a revocation is kept."""
    now, failure = utcnow(), None
    with db.transaction() as session:
        row = session.scalars(select(RefreshToken).where(
            RefreshToken.token_hash == domain.token_digest(token)).with_for_update()).first()
        account = session.get(Account, row.account_id) if row else None
        if row is None or account is None:
            failure = Problem(401, "invalid-refresh-token", "unknown refresh token")
        elif row.revoked_at is not None:
            failure = Problem(401, "invalid-refresh-token", "this sign-in has ended")
        elif row.rotated_at is not None:
            _revoke(session, "reuse", RefreshToken.family_id == row.family_id)
            log.warning("refresh token reused: sign-in revoked",
                        extra={"account_id": row.account_id, "session_id": row.family_id})
            failure = Problem(401, "refresh-token-reused",
                              "this refresh token was already used; sign in again")
        elif row.expires_at <= now:
            failure = Problem(401, "invalid-refresh-token", "the refresh token has expired")
        elif account.status != domain.ACTIVE:
            _revoke(session, "disabled", RefreshToken.family_id == row.family_id)
            failure = Problem(403, "account-disabled", "this account is disabled")
        else:
            claimed = session.execute(update(RefreshToken).where(
                RefreshToken.id == row.id, RefreshToken.rotated_at.is_(None),
                RefreshToken.revoked_at.is_(None)).values(rotated_at=now))
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                failure = Problem(401, "refresh-token-reused", "refreshed concurrently")
            else:
                new = _new_refresh(session, account.id, row.family_id, row.id)
                audit.record(session, "auth.refreshed", subject=f"account:{account.id}",
                             detail={"session": row.family_id})
    if failure is not None:
        if row is not None:
            audit.note_denied(f"account:{row.account_id}")
        raise failure
    return TokenPair(_access_token(key, account, row.family_id), new,  # type: ignore[union-attr]
                     int(domain.ACCESS_TOKEN_TTL.total_seconds()))


def revoke(db: Database, token: str) -> None:
    """Sign out: end the sign-in the refresh token belongs to. An unknown token is not an
    error (RFC 7009): there is nothing left to end."""
    with db.transaction() as session:
        row = session.execute(select(RefreshToken.family_id, RefreshToken.account_id).where(
            RefreshToken.token_hash == domain.token_digest(token))).first()
        family = row.family_id if row else None
        if row is not None:
            _revoke(session, "signed-out", RefreshToken.family_id == row.family_id)
            audit.record(session, "auth.signed-out", subject=f"account:{row.account_id}",
                         detail={"session": row.family_id})
    if family is not None:
        log.info("signed out", extra={"session_id": family})
