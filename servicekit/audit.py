"""The audit trail: who did what, when (UTC), from where, and with what outcome.

RELIABILITY.md asks that every authentication and authorization decision and every state change
of a case, application, delivery or claim be recorded, append-only and tamper-evident, and kept
at least six months. Each service keeps its trail in its own database (the kit's
``audit_trail`` table), for three reasons:

* a state change and its entry commit or roll back together (the entry is written in the same
  transaction, as the outbox row is), so the trail never says something happened that did not,
  nor misses something that did;
* a decision that ends in a refusal (a 401, a 403, someone else's case) rolls its request
  back, so it is written in a short transaction of its own (``record_alone``);
* nothing new has to be running for the trail to be complete.

Writing an entry takes no lock: entries are chained afterwards by ``seal`` (the relay calls it
about once a second), which links unsealed entries in id order under an advisory lock, giving
each its chain position, the previous entry's hash and its own hash (``servicekit.chain``).
So a busy service's transactions never queue behind one another for the trail. Between its
commit and its sealing (about a second) an entry is protected by the triggers alone.

The database refuses to change or delete an entry (triggers made by the kit's migration,
``kit_schema.create_v4``): a sealed entry cannot change at all, an unsealed one only by being
sealed. Someone able to drop the triggers can still rewrite rows, which is what the chain is
for: ``verify`` recomputes every hash, and the sealer logs each new head hash, so a rewritten
trail no longer matches the heads already logged elsewhere. Nothing prunes the table
(``servicekit.retention`` leaves it alone): it is kept for as long as the database is, which
is at least the six months the law asks; archiving older entries is an operator's task.

Entries never carry personal data in clear: the actor is an account id, the subject an
object's id, and ``detail`` passes through the same masking as the logs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, event, func, insert, select, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from servicekit import context
from servicekit.chain import GENESIS, ChainCheck, advisory_key, link_hash, shown, walk
from servicekit.db import Database, uncounted, utcnow
from servicekit.logs import scrub
from servicekit.tables import audit_trail

log = logging.getLogger("servicekit.audit")

#: the pg_advisory_xact_lock key under which one sealer at a time chains a service's trail
SEAL_LOCK = advisory_key(b"ecaudit!")

#: an entry's outcome: a change made, or a request refused
DONE, DENIED = "done", "denied"


@dataclass(frozen=True)
class Actor:
    """Who is acting: an account id (``sub``), ``service`` for another service's internal
    call, ``anonymous``, or ``system`` (a consumer, the scheduler, a command)."""

    who: str
    roles: tuple[str, ...] = ()
    source: str = ""  # the client's address as our gateway passed it on


SYSTEM = Actor("system")
_actor: ContextVar[Actor | None] = ContextVar("audit_actor", default=None)
_denied: ContextVar[str | None] = ContextVar("audit_denied", default=None)


@contextmanager
def acting(actor: Actor) -> Iterator[None]:
    """Entries written inside the block name ``actor``."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def bind(actor: Actor) -> object:
    """``acting`` for hooks that cannot wrap a block (Flask's before/teardown); pass the
    returned token to ``unbind``."""
    return _actor.set(actor)


def unbind(token: object) -> None:
    _actor.reset(token)  # type: ignore[arg-type]


def current() -> Actor:
    return _actor.get() or SYSTEM


def note_denied(subject: str) -> None:
    """Mark the refusal about to be raised as a decision about ``subject`` (``case:<id>``,
    ``account:<id>``), so the entry the web layer writes for it names the object, even when
    the answer is a 404 that hides the object. 401 and 403 answers are recorded without this;
    a 404 only with it."""
    _denied.set(subject)


def denied_subject() -> str | None:
    return _denied.get()


def forget_denied() -> None:
    """A new request starts with no refusal noted (a thread serves many requests)."""
    _denied.set(None)


def entry(action: str, *, subject: str = "", outcome: str = DONE,
          detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """The row of one entry. Detail is masked like a log line: a free-text value cannot put an
    ID number or a mobile number into the trail in clear. The subject is code-made
    (``kind:<id>``) and kept exact, so an object's history can be looked up by it."""
    who = current()
    cause = context.causation_id()
    info = dict(detail or {})
    if cause and "cause" not in info:
        info["cause"] = cause  # the event whose handling made this change
    return {"at": utcnow(), "actor": who.who[:100], "roles": ",".join(who.roles)[:200],
            "source": who.source[:100], "request_id": (context.request_id() or "")[:64] or None,
            "action": action[:100], "subject": subject[:200], "outcome": outcome[:20],
            "detail": scrub(json.dumps(info, ensure_ascii=False, sort_keys=True,
                                       default=str))}


def record(session: Session, action: str, *, subject: str = "", outcome: str = DONE,
           detail: dict[str, Any] | None = None) -> None:
    """Add an entry to ``session``'s transaction: it commits or rolls back with the change."""
    session.execute(insert(audit_trail), [entry(action, subject=subject, outcome=outcome,
                                                detail=detail)])


def record_alone(db: Database, action: str, *, subject: str = "", outcome: str = DENIED,
                 detail: dict[str, Any] | None = None) -> bool:
    """Write one entry in a transaction of its own, for a decision whose request rolls back.
    Returns False (and logs why) if the database would not take it: the caller's answer does
    not change, the refusal stands either way. The entry is not the request's change of state
    (``servicekit.db.uncounted``): the refusal still frees its Idempotency-Key."""
    try:
        with uncounted(), db.transaction() as session:
            record(session, action, subject=subject, outcome=outcome, detail=detail)
    except Exception as exc:  # noqa: BLE001 - the refusal is answered regardless
        log.warning("audit: could not record %s (%s)", action, exc.__class__.__name__)
        return False
    return True


# -- state changes, recorded as they are flushed --------------------------------------------

@dataclass(frozen=True)
class _Tracked:
    kind: str
    values: tuple[str, ...]


_TRACKED: dict[type, _Tracked] = {}


def track(model: type, kind: str, values: Sequence[str] = ()) -> None:
    """Record every insert, update and delete of ``model`` rows, whatever code makes them.

    An entry's action is ``<kind>.created|changed|deleted`` and its subject ``<kind>:<id>``;
    ``detail`` names the changed attributes, with old and new values only for those in
    ``values`` (statuses and other codes, never names, numbers or addresses)."""
    _TRACKED[model] = _Tracked(kind, tuple(values))


def _identity(obj: Any) -> str:
    """The primary key (a new row's is set by its INSERT, before ``after_flush``)."""
    key = sa_inspect(obj).mapper.primary_key_from_instance(obj)
    return ",".join(str(part) for part in key)


def _changes(obj: Any, tracked: _Tracked) -> dict[str, Any]:
    state = sa_inspect(obj)
    changed: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        history = state.attrs[attr.key].history
        if not history.has_changes():
            continue
        if attr.key in tracked.values:
            old = history.deleted[0] if history.deleted else None
            new = history.added[0] if history.added else None
            changed[attr.key] = [old, new]
        else:
            changed[attr.key] = None
    return changed


@event.listens_for(Session, "after_flush")
def _record_tracked(session: Session, _flush: UOWTransaction) -> None:
    if not _TRACKED:
        return
    rows: list[dict[str, Any]] = []
    for verb, objects in (("created", session.new), ("changed", session.dirty),
                          ("deleted", session.deleted)):
        for obj in objects:
            tracked = _TRACKED.get(type(obj))
            if tracked is None:
                continue
            detail: dict[str, Any] = {}
            if verb == "changed":
                changes = _changes(obj, tracked)
                if not changes:
                    continue  # touched, not modified
                detail["changed"] = changes
            elif verb == "created":
                detail = {k: getattr(obj, k) for k in tracked.values}
            rows.append(entry(f"{tracked.kind}.{verb}", subject=f"{tracked.kind}:{_identity(obj)}",
                              detail=detail))
    if rows:
        session.connection().execute(insert(audit_trail), rows)


@event.listens_for(Session, "do_orm_execute")
def _refuse_bulk_changes(state: ORMExecuteState) -> None:
    """A bulk ``update(Model)``/``delete(Model)`` skips the unit of work, and with it the
    entries above: refuse it for tracked models rather than let a change go unrecorded."""
    if (state.is_update or state.is_delete) and state.bind_mapper is not None \
            and state.bind_mapper.class_ in _TRACKED:
        raise TypeError(f"{state.bind_mapper.class_.__name__} rows are audited: change them "
                        "through the session (load, set, flush), not with a bulk statement")


# -- sealing and verifying ------------------------------------------------------------------

def _fields(row: Any) -> dict[str, Any]:
    """What an entry's hash covers: every column but the hash itself and the sealing time."""
    at: datetime = row.at
    return {"id": row.id, "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": row.actor, "roles": row.roles, "source": row.source,
            "request_id": row.request_id, "action": row.action, "subject": row.subject,
            "outcome": row.outcome, "detail": row.detail, "chain_pos": row.chain_pos,
            "prev_hash": row.prev_hash}


_UNSEALED = select(audit_trail).where(audit_trail.c.entry_hash.is_(None)) \
    .order_by(audit_trail.c.id)
_HEAD = select(audit_trail.c.chain_pos, audit_trail.c.entry_hash) \
    .where(audit_trail.c.chain_pos.is_not(None)).order_by(audit_trail.c.chain_pos.desc()) \
    .limit(1)


#: the sealer's one update per entry, run for a batch at once; it sets the four sealing
#: columns together, the one change the append-only triggers let through
_SEAL = update(audit_trail).where(audit_trail.c.id == bindparam("b_id")).values(
    chain_pos=bindparam("b_pos"), prev_hash=bindparam("b_prev"),
    entry_hash=bindparam("b_hash"), sealed_at=bindparam("b_sealed_at"))


def seal(db: Database, limit: int = 1000, service: str = "") -> int:
    """Chain up to ``limit`` unsealed entries, oldest id first; returns how many.

    One sealer at a time: on PostgreSQL a transaction-scoped advisory lock taken without
    waiting (a relay that finds another sealing leaves it the work), on SQLite the database's
    single writer. An entry committed late, after entries with higher ids were sealed, is
    sealed at the end of the chain: its position, not its id, is its place."""
    with db.transaction() as session:
        if db.is_postgres and not session.execute(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SEAL_LOCK}).scalar():
            return 0
        rows = session.execute(_UNSEALED.limit(limit)).all()
        if not rows:
            return 0
        head = session.execute(_HEAD).first()
        pos, prev = (head.chain_pos, head.entry_hash) if head else (0, GENESIS)
        sealed_at = utcnow()
        links = []
        for row in rows:
            pos += 1
            fields = _fields(row) | {"chain_pos": pos, "prev_hash": prev}
            digest = link_hash(fields)
            links.append({"b_id": row.id, "b_pos": pos, "b_prev": prev, "b_hash": digest})
            prev = digest
        # one statement for the batch (psycopg pipelines an executemany): a thousand round
        # trips in the relay's turn would hold up its publishing, and SQLite's one writer
        session.execute(_SEAL, [link | {"b_sealed_at": sealed_at} for link in links])
    # the head, logged: a witness outside the database that a later rewrite cannot match
    log.info("audit %s: sealed %s entries, head %s at position %s", service or db.url.split(
        "/")[-1], len(rows), shown(prev), pos)
    return len(rows)


def verify(session: Session) -> ChainCheck:
    """Walk the sealed entries in chain order and recompute every hash; an entry that claims
    a hash but has no place in the chain (which the triggers refuse) is a break too."""
    rows = session.execute(select(audit_trail).where(audit_trail.c.chain_pos.is_not(None))
                           .order_by(audit_trail.c.chain_pos)).yield_per(1000)
    check = walk(rows, lambda row: row.chain_pos, _fields)
    outside = session.execute(select(audit_trail.c.id).where(
        audit_trail.c.chain_pos.is_(None), audit_trail.c.entry_hash.is_not(None))
        .order_by(audit_trail.c.id).limit(1)).scalar()
    if check.ok and outside is not None:
        return ChainCheck(False, check.entries, check.head_hash, broken_at=None,
                          problem=f"entry {outside} is marked sealed but is not in the chain")
    return check


def sealed_late(session: Session, after: timedelta = timedelta(hours=1)) -> list[int]:
    """Ids of entries sealed more than ``after`` past their own time. The chain proves an
    entry unchanged since it was sealed, not that it was written when it says: an entry
    inserted back-dated (inserting is allowed) is sealed as if genuine, but late. So is every
    entry written while the relays were down, which is why this is a list to look at, not a
    break."""
    rows = session.execute(select(audit_trail.c.id, audit_trail.c.at, audit_trail.c.sealed_at)
                           .where(audit_trail.c.sealed_at.is_not(None))
                           .order_by(audit_trail.c.id)).yield_per(1000)
    return [row.id for row in rows if row.sealed_at - row.at > after]


def unsealed(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(audit_trail)
                               .where(audit_trail.c.entry_hash.is_(None))).scalar_one())
