"""QR sign-in (扫码登录) [003 §1.2]: the web shows a ticket as a QR code, the signed-in mobile
client confirms it, the web's next poll receives a token pair — once.

The ticket is 256 random bits (URL-safe) and is stored only as its SHA-256. Whoever sees the
QR code (a photo, a shared screen) knows the ticket, so the ticket alone only confirms: the
web also gets a *poll secret* (256 random bits, never in the QR code, stored only as its
SHA-256) and every poll must carry it. A poll without it, or with a wrong one, is answered as
an unknown ticket is (404): it learns nothing and never receives the tokens. States:
``pending`` → ``confirmed`` (by an account) → ``consumed`` (tokens handed out, exactly once:
a conditional UPDATE claims the ticket in the poll's transaction, so two parallel polls cannot
both receive tokens). A poll that finds nothing to hand out (pending, expired, consumed)
reads only and writes nothing. Past ``expires_at`` (2 minutes) a ticket is ``expired``. The
tokens are minted at the poll and never stored.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update

from servicekit.db import Database, utcnow
from servicekit.problems import Problem
from servicekit.tokens import SigningKey
from services.identity import domain
from services.identity.models import Account
from services.identity.models_signin import (
    QR_CONFIRMED,
    QR_CONSUMED,
    QR_EXPIRED,
    QR_PENDING,
    QrTicket,
)
from services.identity.signin_throttle import QR_IP, admit
from services.identity.usecases import sessions

log = logging.getLogger(__name__)

TTL = timedelta(minutes=2)
PREFIX = "ecourt-login:"
PENDING, CONFIRMED, CONSUMED, EXPIRED = QR_PENDING, QR_CONFIRMED, QR_CONSUMED, QR_EXPIRED


def create(db: Database, *, client_ip: str) -> dict[str, Any]:
    """A new ticket for the web: the ticket (shown only as the QR code) and the poll secret
    (kept by the web, sent with every poll)."""
    ticket, poll_secret, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), utcnow()
    with db.transaction() as session:
        admit(session, [(QR_IP, client_ip)], now)
        session.execute(delete(QrTicket).where(QrTicket.expires_at <= now - TTL))
        session.add(QrTicket(ticket_hash=domain.token_digest(ticket),
                             poll_hash=domain.token_digest(poll_secret), status=PENDING,
                             created_at=now, expires_at=now + TTL))
    return {"ticket": ticket, "qr_payload": PREFIX + ticket, "poll_secret": poll_secret,
            "expires_in": int(TTL.total_seconds())}


def _not_found() -> Problem:
    return Problem(404, "qr-ticket-not-found", "no such sign-in ticket")


def confirm(db: Database, ticket: str, account_id: str) -> None:
    """The signed-in mobile client approves the web sign-in for its own account."""
    now = utcnow()
    with db.transaction() as session:
        row = session.get(QrTicket, domain.token_digest(ticket), with_for_update=True)
        if row is None:
            raise _not_found()
        if row.expires_at <= now:
            raise Problem(410, "qr-ticket-expired", "this sign-in ticket has expired")
        if row.status != PENDING:
            raise Problem(409, "qr-ticket-used", "this sign-in ticket was already confirmed")
        account = session.get(Account, account_id)
        if account is None or account.status != domain.ACTIVE:
            raise Problem(403, "account-disabled", "this account is disabled")
        row.status, row.account_id, row.confirmed_at = CONFIRMED, account_id, now
    log.info("qr sign-in confirmed", extra={"account_id": account_id})


def _poll_secret_ok(row: QrTicket, poll_secret: str | None) -> bool:
    return row.poll_hash is not None and poll_secret is not None and hmac.compare_digest(
        row.poll_hash, domain.token_digest(poll_secret))


def _unredeemed(row: QrTicket | None, poll_secret: str | None,
                now: datetime) -> dict[str, Any] | None:
    """The poll's answer when it has nothing to write (pending, expired, consumed); ``None``
    for a confirmed ticket, whose tokens the poll is to hand out. No ticket, no poll secret or
    a wrong one: 404."""
    if row is None or not _poll_secret_ok(row, poll_secret):
        raise _not_found()
    if row.status == CONSUMED:
        return {"status": CONSUMED}
    if row.status == EXPIRED or row.expires_at <= now:  # or ended by a password reset
        return {"status": EXPIRED}
    if row.status == PENDING:
        return {"status": PENDING,
                "expires_in": max(0, int((row.expires_at - now).total_seconds()))}
    return None


def poll(db: Database, key: SigningKey, ticket: str, poll_secret: str | None) -> dict[str, Any]:
    """The web's poll, with the ticket's poll secret: the status; the first poll after
    confirmation also gets the tokens. No secret or a wrong one: 404, as for no ticket.

    The web polls every second or two and nearly every poll finds the ticket still pending:
    it looks in a reading transaction (on SQLite no write lock, so the polls neither queue
    behind identity's writes nor hold them up). Only a poll that finds the ticket confirmed
    opens a writing transaction, looks again inside it (a parallel poll, or a password reset,
    may have got there first) and claims the ticket there."""
    now, digest = utcnow(), domain.token_digest(ticket)
    with db.transaction(reads_only=True) as session:
        answer = _unredeemed(session.get(QrTicket, digest), poll_secret, now)
    if answer is not None:
        return answer
    with db.transaction() as session:
        row = session.get(QrTicket, digest)
        answer = _unredeemed(row, poll_secret, now)
        if answer is not None:
            return answer
        assert row is not None  # noqa: S101 - _unredeemed raised for no ticket
        claimed = session.execute(update(QrTicket).where(
            QrTicket.ticket_hash == digest, QrTicket.status == CONFIRMED).values(
            status=CONSUMED, consumed_at=now))
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return {"status": CONSUMED}
        account = session.get(Account, row.account_id)
        if account is None or account.status != domain.ACTIVE:
            return {"status": CONSUMED}
        pair = sessions.start_session(session, key, account, "qr")
    log.info("signed in by qr", extra={"account_id": account.id})
    return {"status": CONFIRMED, "access_token": pair.access_token,
            "refresh_token": pair.refresh_token, "token_type": pair.token_type,
            "expires_in": pair.expires_in}
