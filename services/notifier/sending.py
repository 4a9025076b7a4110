"""Sending one SMS request: the same logic under both consumers (kombu embedded, pika)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from servicekit.db import utcnow
from servicekit.envelope import CloudEvent
from servicekit.logs import mask_phone
from servicekit.sealed import unseal
from services.notifier.models import SmsMessage
from services.notifier.providers import SmsProvider

SMS_REQUESTED = "delivery.sms.requested"


def send_requested_sms(session: Session, event: CloudEvent, provider: SmsProvider,
                       secret: str) -> SmsMessage:
    """Send and record one SMS, inside the caller's transaction (which holds the inbox row).

    If the commit after a successful send fails, the redelivery sends again with the same
    message id: at-least-once, de-duplicated by a gateway that honours message ids.
    """
    phone = unseal(event.data["phone_sealed"], secret)
    ref = provider.send(event.id, phone, event.data["text"])
    message = SmsMessage(event_id=event.id, account_id=event.data.get("account_id", ""),
                         phone_masked=mask_phone(phone), template=event.data.get("template", ""),
                         text=event.data["text"], status="sent", attempts=1,
                         provider_ref=ref, created_at=utcnow(), sent_at=utcnow())
    session.merge(message)
    return message
