"""Writing to the transactional outbox.

``emit`` adds the event to the *caller's* session: it commits with the state change or not at
all, so there is no ghost event (sent but rolled back) and no zombie record (saved, never sent).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from servicekit import context
from servicekit.db import utcnow
from servicekit.envelope import CloudEvent
from servicekit.publishers import TOPIC
from servicekit.tables import outbox

#: One statement, compiled once: the outbox insert rides on every state change.
_INSERT = insert(outbox)


def emit(session: Session, type_: str, data: dict[str, Any], *, source: str,
         subject: str | None = None) -> CloudEvent:
    """Record an event for publication to the topic exchange, in the caller's transaction."""
    event = CloudEvent(type=type_, source=source, data=data, subject=subject,
                       correlationid=context.correlation_id(),
                       causationid=context.causation_id())
    enqueue(session, event, exchange=TOPIC, routing_key=type_)
    return event


def enqueue(session: Session, event: CloudEvent, *, exchange: str, routing_key: str,
            headers: dict[str, Any] | None = None, delay: float = 0.0,
            now: datetime | None = None) -> None:
    """Add one outbox row: ``exchange=TOPIC`` publishes to the suite's topic exchange with
    ``routing_key`` = the type; ``exchange=QUEUE`` sends to the queue named ``routing_key``
    directly (retries and dead letters)."""
    now = now or utcnow()
    session.execute(_INSERT, {
        "event_id": event.id, "type": event.type, "exchange": exchange,
        "routing_key": routing_key, "body": event.to_json(),
        "headers": json.dumps(headers) if headers else "{}", "created_at": now,
        "available_at": now + timedelta(seconds=delay) if delay else now, "attempts": 0,
    })


def backlog(session: Session) -> int:
    """How many rows wait to be published (a metric and a readiness hint)."""
    return session.scalar(select(func.count()).select_from(outbox)
                          .where(outbox.c.sent_at.is_(None))) or 0
