"""The outbox relay: publish unsent rows with confirms, mark them sent, never lose one.

A batch is claimed with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL), so several relays of one
service share the work without publishing a row twice at once. Rows are marked sent only after
the broker confirmed them, in bulk. A broker outage leaves every row in place; the relay backs
off (up to ``max_backoff``) and tries again. A row the broker refused (nack, or returned as
unroutable) gets its own backoff through ``available_at`` and does not hold up the others.
Publishing is at-least-once: a crash between the confirm and the commit republishes the batch,
and the consumers' inbox makes that harmless.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from servicekit import metrics
from servicekit.db import Database, utcnow
from servicekit.publishers import Outgoing, Publisher, PublishError, headers_json
from servicekit.tables import outbox

log = logging.getLogger(__name__)


def row_backoff(attempts: int) -> float:
    """Seconds before a refused row is tried again: 1, 2, 4 … capped at five minutes."""
    return float(min(300, 2 ** max(0, attempts - 1)))


class Relay:
    def __init__(self, service: str, db: Database, publisher: Publisher, *,
                 batch_size: int | None = None, poll_interval: float = 0.2,
                 max_backoff: float = 30.0) -> None:
        self.service = service
        self.db = db
        self.publisher = publisher
        self.batch_size = batch_size or getattr(publisher, "preferred_batch", 500)
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.wake = threading.Event()
        db.on_commit(self.wake.set)

    def run_once(self) -> int:
        """Publish one batch; returns how many rows were confirmed. Raises PublishError."""
        now = utcnow()
        with self.db.transaction() as session:
            rows = session.execute(
                select(outbox.c.id, outbox.c.event_id, outbox.c.exchange, outbox.c.routing_key,
                       outbox.c.body, outbox.c.headers, outbox.c.type, outbox.c.attempts)
                .where(outbox.c.sent_at.is_(None), outbox.c.available_at <= now)
                .order_by(outbox.c.id).limit(self.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return 0
            messages = [Outgoing(r.id, r.event_id, r.exchange or "topic", r.routing_key, r.body,
                                 headers_json(r.headers)) for r in rows]
            result = self.publisher.publish_batch(messages)
            sent_at = utcnow()
            if result.confirmed:
                session.execute(update(outbox).where(outbox.c.id.in_(result.confirmed))
                                .values(sent_at=sent_at))
            attempts = {r.id: r.attempts for r in rows}
            for row_id, reason in result.failed.items():
                self._refuse(session, row_id, attempts[row_id] + 1, reason, sent_at)
            types = {r.id: r.type for r in rows}
        for type_, count in Counter(types[row_id] for row_id in result.confirmed).items():
            metrics.EVENTS_PUBLISHED.labels(self.service, type_).inc(count)
        return len(result.confirmed)

    def _refuse(self, session: Session, row_id: int, attempts: int, reason: str,
                now: datetime) -> None:
        log.error("outbox row %s refused by the broker (attempt %s): %s", row_id, attempts,
                  reason)
        metrics.PUBLISH_FAILURES.labels(self.service, reason.split(":")[0]).inc()
        session.execute(update(outbox).where(outbox.c.id == row_id).values(
            attempts=attempts, last_error=reason[:500],
            available_at=now + timedelta(seconds=row_backoff(attempts)),
        ))

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set: drain, idle, back off on broker trouble."""
        backoff = 0.5
        while not stop.is_set():
            try:
                published = self.run_once()
                backoff = 0.5
            except PublishError as exc:
                log.warning("relay %s: broker unavailable (%s); retrying in %.1fs",
                            self.service, exc, backoff)
                metrics.PUBLISH_FAILURES.labels(self.service, "broker").inc()
                stop.wait(backoff)
                backoff = min(self.max_backoff, backoff * 2)
                continue
            except Exception:
                log.exception("relay %s: unexpected error; retrying", self.service)
                stop.wait(backoff)
                backoff = min(self.max_backoff, backoff * 2)
                continue
            if published < self.batch_size:
                self.wake.clear()
                self._idle(stop)
        self.publisher.close()

    def _idle(self, stop: threading.Event) -> None:
        """Wait for a commit, the poll interval or ``stop``, keeping the publisher alive."""
        waited = 0.0
        step = 0.02
        while waited < self.poll_interval and not stop.is_set() and not self.wake.is_set():
            self.publisher.idle(step)
            waited += step
