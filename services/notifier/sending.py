"""Sending one SMS request: the same logic under both consumers (kombu embedded, pika)."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy.orm import Session

from servicekit.db import utcnow
from servicekit.envelope import CloudEvent
from servicekit.logs import mask_phone
from servicekit.sealed import unseal
from services.notifier.models import SmsMessage
from services.notifier.providers import SmsProvider

SMS_REQUESTED = "delivery.sms.requested"
_DIGITS = re.compile(r"\d{4,8}")


def redact(text: str) -> str:
    """What the notifier keeps of a sealed text (a verification code): the digits masked."""
    return _DIGITS.sub(lambda m: "*" * len(m.group()), text)


def send_requested_sms(session: Session, event: CloudEvent, provider: SmsProvider,
                       secret: str) -> SmsMessage:
    """Send and record one SMS, inside the caller's transaction (which holds the inbox row).

    If the commit after a successful send fails, the redelivery sends again with the same
    message id: at-least-once, de-duplicated by a gateway that honours message ids. An SMS
    past its ``expires_at`` is recorded as ``expired`` and not sent.
    """
    phone = unseal(event.data["phone_sealed"], secret)
    sealed_text = event.data.get("text_sealed")
    text = unseal(sealed_text, secret) if sealed_text else event.data["text"]
    message = SmsMessage(event_id=event.id, account_id=event.data.get("account_id", ""),
                         phone_masked=mask_phone(phone), template=event.data.get("template", ""),
                         text=redact(text) if sealed_text else text, created_at=utcnow())
    if expired(event):
        # a code that no longer works (the request waited out an outage, or was replayed
        # from the dead-letter queue): sending it would only confuse its reader
        message.status, message.attempts = "expired", 0
    else:
        message.provider_ref = provider.send(event.id, phone, text)
        message.status, message.attempts, message.sent_at = "sent", 1, utcnow()
    session.merge(message)
    return message


def expired(event: CloudEvent) -> bool:
    """Whether the SMS carries a time after which it is not worth sending, now past."""
    raw = event.data.get("expires_at")
    if not raw:
        return False
    try:
        return datetime.fromisoformat(str(raw)) <= utcnow()
    except ValueError:
        return False  # an unreadable time sends rather than drops: the code may still work
