"""Sending one SMS request: the same logic under both consumers (kombu embedded, pika)."""

from __future__ import annotations

import re

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
    message id: at-least-once, de-duplicated by a gateway that honours message ids.
    """
    phone = unseal(event.data["phone_sealed"], secret)
    sealed_text = event.data.get("text_sealed")
    text = unseal(sealed_text, secret) if sealed_text else event.data["text"]
    ref = provider.send(event.id, phone, text)
    message = SmsMessage(event_id=event.id, account_id=event.data.get("account_id", ""),
                         phone_masked=mask_phone(phone), template=event.data.get("template", ""),
                         text=redact(text) if sealed_text else text, status="sent", attempts=1,
                         provider_ref=ref, created_at=utcnow(), sent_at=utcnow())
    session.merge(message)
    return message
