"""The issuance log's head, for outside witnesses (public; the gateway rate-limits it).

The log is hash-chained (``ledger.py``): pinning an entry's hash somewhere the court does not
control — a notary, another court, a newspaper — makes any later rewrite of the history up to
it visible, because the entry at that place would no longer carry the pinned hash. These
routes give a witness what it needs to pin and to check, and nothing about the documents:
no document id, no anti-counterfeit code (which would let anyone look every document up), no
file hash; only each entry's place, time, hash and its predecessor's hash.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import select

from servicekit.access import public
from servicekit.problems import Problem
from servicekit.service import runtime
from services.documents import ledger
from services.documents.models import LogEntry

blp = Blueprint("ledger", __name__, description="The issuance log's head, for witnesses")
#: the last place the log can hold: ``issuance_log.seq`` is an INTEGER, 32 bits on PostgreSQL.
#: A larger number is no place in the log, so the route does not match it (404, and the
#: OpenAPI states the bound); handed to the database it overflows the column, a 500.
MAX_SEQ = 2**31 - 1


class LedgerEntrySchema(Schema):
    seq = fields.Integer(metadata={"description": "the entry's place, from 1"})
    issued_at = fields.DateTime(metadata={"description": "UTC, to the second"})
    entry_hash = fields.String(metadata={"description": "SHA-256 (hex) of the entry and "
                                                        "prev_hash"})
    prev_hash = fields.String(metadata={"description": "the previous entry's hash (64 zeros "
                                                       "before the first)"})


class LedgerHeadSchema(Schema):
    entries = fields.Integer(metadata={"description": "how many documents were issued"})
    head = fields.Nested(LedgerEntrySchema, allow_none=True,
                         metadata={"description": "the last entry; null before the first"})


def _view(entry: LogEntry) -> dict[str, Any]:
    return {"seq": entry.seq, "issued_at": entry.issued_at, "entry_hash": entry.entry_hash,
            "prev_hash": entry.prev_hash}


@blp.route("/ledger")
class LedgerHead(MethodView):
    @public
    @blp.response(200, LedgerHeadSchema)
    def get(self) -> dict[str, Any]:
        """The issuance log's last entry: pin its ``seq`` and ``entry_hash``."""
        with runtime().db.transaction(reads_only=True) as session:
            last = ledger.head(session)
            return {"entries": last.seq if last else 0,
                    "head": _view(last) if last else None}


@blp.route(f"/ledger/<int(max={MAX_SEQ}):seq>")
class LedgerEntry(MethodView):
    @public
    @blp.response(200, LedgerEntrySchema)
    def get(self, seq: int) -> dict[str, Any]:
        """The entry at ``seq``: a pinned hash must still be there."""
        with runtime().db.transaction(reads_only=True) as session:
            entry = session.scalars(select(LogEntry).where(LogEntry.seq == seq)).first()
            if entry is None:
                raise Problem(404, "not-found", "no entry at that place in the issuance log")
            return _view(entry)
