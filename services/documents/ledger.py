"""The append-only, hash-chained issuance log.

Each entry records (seq, document_id, code, sha256, issued_at) and ``prev_hash``, the previous
entry's hash; ``entry_hash = sha256(canonical JSON of the entry ‖ prev_hash)``. Changing,
removing, reordering or back-dating any entry breaks every hash after it, so publishing the
head hash from time to time (or handing it to an outside witness) pins the whole history.
Times never decrease along ``seq`` (issuance restamps an entry that lost a race to the lock),
so an entry appended with a time before its predecessor's shows as back-dated too.
The first entry's ``prev_hash`` is 64 zeros.

Appending is serialised: on PostgreSQL by a transaction-scoped advisory lock (several
consumers may issue at once; a ``FOR UPDATE`` on the last row would not cover the very first
entry), on SQLite by the database's single writer (the kit opens with ``BEGIN IMMEDIATE``).
The primary key on ``seq`` is the last line of defence: a lost race fails the transaction and
the consumer retries it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from servicekit.chain import GENESIS, ChainCheck, advisory_key, link_hash, walk
from servicekit.chain import canonical as link_bytes
from services.documents.models import Document, LogEntry

__all__ = ["GENESIS", "ChainCheck", "append", "canonical", "entry_hash", "head", "lock",
           "verify_chain", "verify_entries"]

#: the pg_advisory_xact_lock key of the issuance log
LOCK_KEY = advisory_key(b"ecourtdl")


def _fields(seq: int, document_id: str, code: str, sha256: str, issued_at: datetime,
            prev_hash: str) -> dict[str, object]:
    moment = issued_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # UTC to the second
    return {"seq": seq, "document_id": document_id, "code": code, "sha256": sha256,
            "issued_at": moment, "prev_hash": prev_hash}


def canonical(seq: int, document_id: str, code: str, sha256: str, issued_at: datetime,
              prev_hash: str) -> bytes:
    """The bytes an entry's hash covers (``servicekit.chain.canonical``)."""
    return link_bytes(_fields(seq, document_id, code, sha256, issued_at, prev_hash))


def entry_hash(seq: int, document_id: str, code: str, sha256: str, issued_at: datetime,
               prev_hash: str) -> str:
    return link_hash(_fields(seq, document_id, code, sha256, issued_at, prev_hash))


def lock(session: Session) -> None:
    """Take the issuance lock until the end of the transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})


def head(session: Session) -> LogEntry | None:
    return session.scalars(select(LogEntry).order_by(LogEntry.seq.desc()).limit(1)).first()


def append(session: Session, document: Document) -> LogEntry:
    """Append ``document`` to the log; call under ``lock`` in the issuing transaction."""
    last = head(session)
    seq = last.seq + 1 if last else 1
    prev = last.entry_hash if last else GENESIS
    issued_at = document.issued_at.replace(microsecond=0)
    entry = LogEntry(seq=seq, document_id=document.id, code=document.code,
                     sha256=document.sha256, issued_at=issued_at, prev_hash=prev,
                     entry_hash=entry_hash(seq, document.id, document.code, document.sha256,
                                           issued_at, prev))
    session.add(entry)
    return entry



def verify_entries(entries: Iterable[LogEntry],
                   documents: dict[str, tuple[str, str]] | None = None) -> ChainCheck:
    """Walk the chain in order. ``documents`` (id → (code, sha256)) also cross-checks that
    the documents table still says what the log recorded. An entry timed before the entry
    it follows is a problem too: issuance appends in time order (``issuance.in_log_order``),
    so such an entry was back-dated, although its hashes may be sound."""
    before: list[datetime] = []

    def differs(entry: LogEntry) -> str | None:
        if documents is not None and documents.get(entry.document_id) != (entry.code,
                                                                          entry.sha256):
            return "the document's code or SHA-256 differs from the log"
        if before and entry.issued_at < before[0]:
            return "issued_at is earlier than the entry before it (the log is kept in time order)"
        before[:] = [entry.issued_at]
        return None

    return walk(entries, lambda entry: entry.seq,
                lambda e: _fields(e.seq, e.document_id, e.code, e.sha256, e.issued_at,
                                  e.prev_hash), differs)


def verify_chain(session: Session, *, cross_check: bool = True) -> ChainCheck:
    entries = session.scalars(select(LogEntry).order_by(LogEntry.seq)).yield_per(1000)
    documents = None
    if cross_check:
        documents = {row.id: (row.code, row.sha256) for row in session.execute(
            select(Document.id, Document.code, Document.sha256))}
    return verify_entries(entries, documents)
