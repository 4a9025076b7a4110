"""The outbox relay: publish unsent rows with confirms, mark them sent, never lose one.

A batch is claimed with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL), so several relays of one
service share the work without publishing a row twice at once. Rows are marked sent only after
the broker confirmed them, in bulk. A broker outage leaves every row in place; the relay backs
off (up to ``max_backoff``) and tries again. A row the broker refused (nack, or returned as
unroutable) gets its own backoff through ``available_at`` and does not hold up the others.

A claim starts with the oldest due row, so a row that makes the whole batch fail before
anything is settled (the broker closes the channel over it: a body over its
``max_message_size``; the client cannot write it) would fail every batch after it too. A batch
that fails with nothing settled is therefore isolated: the relay next publishes its first row
alone; if that row fails alone it is refused like a nacked row (its own backoff, attempts
counted), and the claims grow back (1, 2, 4 … ``batch_size`` rows) as long as they succeed.
A failure to connect isolates nothing: nothing was written. Rows the publisher can tell are
unpublishable before writing (a message id over 255 bytes) are refused at once, row by row.
Publishing is at-least-once: a crash between the confirm and the commit republishes the batch,
and the consumers' inbox makes that harmless.

When it has nothing to publish, the relay also keeps the service's kit tables to their
``retention`` (``servicekit.retention``): sent outbox rows, inbox entries and idempotency keys
past their age are deleted, a few short chunks at a time, so none of them grows with every
event or request ever made.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Row, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from servicekit import audit, metrics, retention
from servicekit.db import Database, utcnow
from servicekit.publishers import BatchResult, Outgoing, Publisher, PublishError, headers_json
from servicekit.retention import Retention
from servicekit.tables import outbox

log = logging.getLogger(__name__)


def _messages(rows: Sequence[Row[Any]]) -> list[Outgoing]:
    """The claimed rows (in ``_CLAIM``'s column order) as messages to publish."""
    return [Outgoing(id_, event_id, exchange or "topic", routing_key, body,
                     headers_json(headers))
            for id_, event_id, exchange, routing_key, body, headers, _type, _attempts in rows]


def row_backoff(attempts: int) -> float:
    """Seconds before a refused row is tried again: 1, 2, 4 … capped at five minutes."""
    return float(min(300, 2 ** max(0, attempts - 1)))


#: the claim: lock the oldest unsent rows that are due, skipping rows another relay holds,
#: then read them. Locking in a subquery that selects ids only lets PostgreSQL sort narrow
#: rows in memory; sorting the whole rows (bodies included) spilled to disk and doubled the
#: time of a 2,000-row claim.
_LOCKED_IDS = (select(outbox.c.id)
               .where(outbox.c.sent_at.is_(None), outbox.c.available_at <= bindparam("now"))
               .order_by(outbox.c.id).limit(bindparam("size"))
               .with_for_update(skip_locked=True))
_CLAIM = (select(outbox.c.id, outbox.c.event_id, outbox.c.exchange, outbox.c.routing_key,
                 outbox.c.body, outbox.c.headers, outbox.c.type, outbox.c.attempts)
          .where(outbox.c.id.in_(_LOCKED_IDS.scalar_subquery()))
          .order_by(outbox.c.id))
#: marking a batch sent: on PostgreSQL one array parameter, not thousands of placeholders that
#: the driver would parse and the server plan anew for every batch size
_MARK_SENT_PG = (update(outbox)
                 .where(outbox.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
                 .values(sent_at=bindparam("sent_at")))


class _Claim:
    """A claimed batch: its open transaction (which holds the row locks), its rows and, once
    written to the broker, the publisher's ticket."""

    __slots__ = ("rows", "session", "ticket", "unit")

    def __init__(self, unit: AbstractContextManager[Session], session: Session,
                 rows: Sequence[Row[Any]]) -> None:
        self.unit = unit
        self.session = session
        self.rows = rows
        self.ticket: Any = None

    def close(self, exc: BaseException | None = None) -> None:
        """Commit (``exc`` is None) or roll back the claim's transaction."""
        if exc is None:
            self.unit.__exit__(None, None, None)
        else:
            self.unit.__exit__(type(exc), exc, exc.__traceback__)


class Relay:
    """Publishes one service's outbox.

    On PostgreSQL with a publisher that can keep several batches outstanding (``send`` and
    ``collect``, as ``PikaPublisher``), ``run_once`` pipelines: while the broker confirms batch
    N, batch N+1 is claimed in a second transaction and written, and batch N is marked sent
    and committed, so neither the database's round trips nor the broker's confirms wait for
    the other. ``SKIP LOCKED`` keeps the two claims (and other relays) apart. Elsewhere (SQLite,
    kombu) it works batch after batch: claim, publish, wait, mark sent, commit.
    """

    #: how long one ``run_once`` keeps the pipeline going before it returns to ``run``
    pipeline_seconds = 5.0
    #: how often ``run`` prunes the kit tables (only when it has nothing to publish)
    prune_every = 300.0
    #: how often ``run`` chains new audit-trail entries (``servicekit.audit.seal``)
    seal_every = 1.0

    def __init__(self, service: str, db: Database, publisher: Publisher, *,
                 batch_size: int | None = None, poll_interval: float = 0.2,
                 max_backoff: float = 30.0,
                 retention: Retention = Retention()) -> None:
        self.service = service
        self.db = db
        self.publisher = publisher
        self.batch_size = batch_size or getattr(publisher, "preferred_batch", 500)
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.retention = retention
        self._pruned_at = float("-inf")
        self._sealed_at = float("-inf")
        self.wake = threading.Event()
        self.pipelined = db.is_postgres and callable(getattr(publisher, "send", None)) \
            and callable(getattr(publisher, "collect", None))
        #: rows per claim: ``batch_size``, 1 after a batch failed with nothing settled, then
        #: doubled after each batch that went through
        self._limit = self.batch_size
        #: the last batch failed with nothing settled: its first row is being tried alone
        self._isolating = False
        #: the last claim was smaller than ``batch_size`` and full: more is due at once
        self._ramping = False
        db.on_commit(self.wake.set)

    def run_once(self) -> int:
        """Publish what is due (one batch, or on the pipelined path as many full batches as
        arrive within ``pipeline_seconds``); returns how many rows were confirmed.

        Raises PublishError when the broker is unavailable; every unconfirmed row stays."""
        self._ramping = False
        if self.pipelined:
            return self._run_pipelined()
        now = utcnow()
        with self.db.transaction() as session:
            size = self._limit
            rows = session.execute(_CLAIM, {"now": now, "size": size}).all()
            if not rows:
                return 0
            try:
                result = self.publisher.publish_batch(_messages(rows))
            except Exception as exc:
                refusal = self._publish_failed(exc, rows)
                if refusal is None:
                    raise
                result = refusal
            else:
                self._published(size, len(rows))
            self._settle(session, rows, result)
        self._count(rows, result)
        return len(result.confirmed)

    def _publish_failed(self, exc: Exception, rows: Sequence[Row[Any]]) -> BatchResult | None:
        """The publisher raised ``exc`` for ``rows``, settling none of them. Returns the
        refusal of a row that failed alone (to settle and commit), or None: then ``exc``
        stands, the claim rolls back untouched, and the batch's first row goes alone next."""
        if isinstance(exc, PublishError) and exc.unreachable:
            return None  # nothing was written: an outage, no sign against any row
        if self._isolating and len(rows) == 1 and (
                not isinstance(exc, PublishError) or exc.suspect):
            self._isolating = False
            self._limit = self.batch_size
            return BatchResult([], {rows[0][0]: f"failed alone: {exc.__class__.__name__}: "
                                                f"{exc}"})
        # a timeout or a blocked connection, alone, says nothing against the row: try again
        self._isolating = True
        self._limit = 1
        return None

    def _published(self, size: int, claimed: int) -> None:
        """A claim of ``size`` rows (``claimed`` of them) went through: grow the claims back."""
        self._isolating = False
        if self._limit < self.batch_size:
            self._ramping = claimed >= size
            self._limit = min(self.batch_size, self._limit * 2)

    def _claim(self, size: int | None = None) -> _Claim | None:
        """Open a transaction and claim a batch in it; None (and nothing open) if none is due."""
        unit = self.db.transaction()
        session = unit.__enter__()
        try:
            rows = session.execute(_CLAIM, {"now": utcnow(),
                                            "size": size or self.batch_size}).all()
        except BaseException as exc:
            unit.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if not rows:
            unit.__exit__(None, None, None)
            return None
        return _Claim(unit, session, rows)

    def _run_pipelined(self) -> int:
        publisher: Any = self.publisher
        deadline = time.monotonic() + self.pipeline_seconds
        published = 0
        size = self._limit
        current = self._claim(size)
        open_claims = [current] if current else []
        failing: _Claim | None = None  # the claim whose send or collect is under way
        refusal: BatchResult | None = None
        try:
            if current is not None:
                failing = current
                current.ticket = publisher.send(_messages(current.rows))
                failing = None
            while current is not None:
                following = None
                if len(current.rows) >= self.batch_size and not self._isolating \
                        and time.monotonic() < deadline:
                    following = self._claim()  # a second transaction: SKIP LOCKED skips ours
                    if following is not None:
                        open_claims.append(following)
                        failing = following
                        following.ticket = publisher.send(_messages(following.rows))
                failing = current
                result = publisher.collect(current.ticket)
                failing = None
                self._published(size, len(current.rows))
                size = self.batch_size
                self._settle(current.session, current.rows, result)
                open_claims.remove(current)
                current.close()  # commit: the batch is marked sent
                self._count(current.rows, result)
                published += len(result.confirmed)
                current = following
        except Exception as exc:
            if failing is not None:  # alone (so no other claim open) it may be refused
                refusal = self._publish_failed(exc, failing.rows)
            if refusal is None or open_claims != [failing]:
                self._roll_back(open_claims, exc)
                raise
        except BaseException as exc:
            self._roll_back(open_claims, exc)
            raise
        if refusal is not None and failing is not None:  # a row failed alone: refuse it
            try:
                self._settle(failing.session, failing.rows, refusal)
            except BaseException as exc:
                self._roll_back(open_claims, exc)
                raise
            failing.close()
        return published

    @staticmethod
    def _roll_back(claims: list[_Claim], exc: BaseException) -> None:
        """Roll back every open claim: its rows stay unsent and are published again later
        (at least once; the consumers' inbox absorbs the repeat)."""
        for claim in claims:
            with contextlib.suppress(Exception):
                claim.close(exc)

    def _settle(self, session: Session, rows: Sequence[Row[Any]], result: BatchResult) -> None:
        """Mark the confirmed rows sent and give each refused row its own backoff."""
        sent_at = utcnow()
        if result.confirmed:
            if self.db.is_postgres:
                session.execute(_MARK_SENT_PG, {"ids": result.confirmed, "sent_at": sent_at})
            else:
                session.execute(update(outbox).where(outbox.c.id.in_(result.confirmed))
                                .values(sent_at=sent_at))
        if result.failed:
            attempts = {r[0]: r[7] for r in rows}
            for row_id, reason in result.failed.items():
                self._refuse(session, row_id, attempts[row_id] + 1, reason, sent_at)

    def _count(self, rows: Sequence[Row[Any]], result: BatchResult) -> None:
        """Count the published events by type, once their batch is committed."""
        if result.confirmed:
            types = {r[0]: r[6] for r in rows}
            for type_, count in Counter(types[row_id] for row_id in result.confirmed).items():
                metrics.EVENTS_PUBLISHED.labels(self.service, type_).inc(count)

    def _refuse(self, session: Session, row_id: int, attempts: int, reason: str,
                now: datetime) -> None:
        log.error("outbox row %s refused (attempt %s): %s", row_id, attempts,
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
            self._seal_now_and_then()
            if published < self.batch_size and not self._ramping:
                self.wake.clear()
                self._prune_now_and_then()
                self._idle(stop)
        self.publisher.close()

    def prune(self, now: datetime | None = None, chunk: int = 1000,
              max_chunks: int | None = None) -> int:
        """Delete the kit tables' rows older than their retention before ``now``, ``chunk``
        rows per short transaction (at most ``max_chunks`` per table); returns how many.
        Unsent outbox rows are never touched, however old."""
        deleted = retention.prune(self.db, self.retention, now or utcnow(), chunk, max_chunks)
        for table, count in deleted.items():
            log.info("relay %s: pruned %s %s rows older than %s", self.service, count, table,
                     self.retention.of(table))
            metrics.ROWS_PRUNED.labels(self.service, table).inc(count)
        return sum(deleted.values())

    def _prune_now_and_then(self, chunk: int = 1000, max_chunks: int = 10) -> None:
        """Prune a little when idle: a long backlog of old rows (the first run on an old
        database) is worked off ``max_chunks`` chunks per idle moment, never in one go that
        would hold up publishing."""
        started = time.monotonic()
        if self.retention == retention.KEEP_ALL or started - self._pruned_at < self.prune_every:
            return
        self._pruned_at = started
        try:
            if self.prune(chunk=chunk, max_chunks=max_chunks) >= chunk * max_chunks:
                self._pruned_at = float("-inf")  # maybe more to do: again when next idle
        except Exception as exc:  # a later round tries again; publishing goes on
            log.warning("relay %s: pruning the kit tables failed: %s", self.service,
                        exc.__class__.__name__)

    def _seal_now_and_then(self, limit: int = 1000) -> None:
        """Chain the audit trail's new entries about once a second, busy or idle, so an entry
        is unsealed (guarded by the triggers alone) for about that long."""
        started = time.monotonic()
        if started - self._sealed_at < self.seal_every:
            return
        self._sealed_at = started
        try:
            sealed = audit.seal(self.db, limit, self.service)
        except Exception as exc:  # the next turn tries again; publishing goes on
            log.warning("relay %s: sealing the audit trail failed: %s", self.service,
                        exc.__class__.__name__)
            metrics.AUDIT_SEAL_FAILURES.labels(self.service).inc()
            return
        if sealed:
            metrics.AUDIT_SEALED.labels(self.service).inc(sealed)
        if sealed >= limit:
            self._sealed_at = float("-inf")  # more waiting: again next turn

    def _idle(self, stop: threading.Event) -> None:
        """Wait for a commit, the poll interval or ``stop``, keeping the publisher alive."""
        waited = 0.0
        step = 0.02
        while waited < self.poll_interval and not stop.is_set() and not self.wake.is_set():
            self.publisher.idle(step)
            waited += step
