"""delivery's use cases: tell an account something, on the portal and by SMS."""

from __future__ import annotations

from flask_smorest.pagination import PaginationParameters
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from servicekit import audit
from servicekit.db import Database, legal_now
from servicekit.ids import new_id
from servicekit.outbox import emit
from servicekit.paging import page_of
from servicekit.problems import Problem
from servicekit.sealed import seal
from services.delivery.models import Notification

SOURCE = "/delivery"


def notify(session: Session, *, account_id: str, category: str, title: str, body: str,
           source_event_id: str) -> Notification:
    note = Notification(id=new_id(), account_id=account_id, category=category,
                        title=title, body=body, source_event_id=source_event_id,
                        created_at=legal_now())
    session.add(note)
    return note


def request_sms(session: Session, *, account_id: str, phone: str, template: str, text: str,
                secret: str) -> None:
    """Ask the notifier to send one SMS; the phone travels sealed, never in clear."""
    emit(session, "delivery.sms.requested",
         {"account_id": account_id, "phone_sealed": seal(phone, secret), "template": template,
          "text": text}, source=SOURCE, subject=account_id)


def request_secret_sms(session: Session, *, account_id: str, phone_sealed: str, template: str,
                       text: str, secret: str, expires_at: str | None = None) -> None:
    """An SMS whose text is itself a secret (a verification code): the text travels sealed
    too, and the notifier keeps only a redacted copy. ``expires_at`` (ISO 8601, UTC): when
    the code stops working, after which the notifier drops the SMS instead of sending it."""
    data = {"account_id": account_id, "phone_sealed": phone_sealed, "template": template,
            "text_sealed": seal(text, secret)}
    if expires_at:
        data["expires_at"] = expires_at
    emit(session, "delivery.sms.requested", data, source=SOURCE, subject=account_id)


def inbox_of(db: Database, account_id: str,
             page: PaginationParameters) -> tuple[list[Notification], int]:
    """One page of the account's notifications, newest first, and how many of all of them
    are unread."""
    with db.transaction(reads_only=True) as session:
        query = (select(Notification).where(Notification.account_id == account_id)
                 .order_by(Notification.created_at.desc(), Notification.id.desc()))
        items = list(page_of(session, query, page).scalars())
        unread = session.scalar(select(func.count()).select_from(Notification).where(
            Notification.account_id == account_id, Notification.read_at.is_(None))) or 0
    return items, unread


def mark_read(db: Database, account_id: str, notification_id: str) -> Notification:
    """Mark a notification read: the addressee signing for it. Only the first sign-off
    counts, so the row is locked while it is decided: a second "read" in flight (two tabs, a
    double click) waits, then finds it read and leaves the first time as it was."""
    with db.transaction() as session:
        note = session.get(Notification, notification_id, with_for_update=True)
        if note is not None and note.account_id != account_id:
            audit.note_denied(f"delivery:{note.id}")
        if note is None or note.account_id != account_id:
            raise Problem(404, "not-found", "no such notification")
        if note.read_at is None:
            note.read_at = legal_now()
    return note
