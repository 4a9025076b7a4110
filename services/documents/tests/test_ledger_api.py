"""The issuance log's head for outside witnesses: public, pinned hashes checkable, nothing
about the documents (failed before: the head hash was only logged, nothing to pin from)."""

from __future__ import annotations

from sqlalchemy import select

from servicekit.testing import problem_of
from services.documents import ledger
from services.documents.models import LogEntry
from services.documents.tests.conftest import Harness, certificate_request


def _issue(h: Harness, n: int) -> list[dict[str, object]]:
    for _ in range(n):
        h.deliver("matters.certificate.requested", certificate_request())
    return [e["data"] for e in h.emitted("documents.document.issued")]


def test_the_head_before_and_after_issuing(harness: Harness) -> None:
    empty = harness.client.get("/ledger")  # no token: anyone may ask
    assert empty.status_code == 200 and empty.get_json() == {"entries": 0, "head": None}

    harness.register_seal()
    issued = _issue(harness, 3)
    body = harness.client.get("/ledger").get_json()
    with harness.rt.db.transaction() as session:
        last = ledger.head(session)
        assert last is not None
        assert body["entries"] == 3 == last.seq
        assert body["head"]["entry_hash"] == last.entry_hash
        assert body["head"]["prev_hash"] == session.scalars(
            select(LogEntry.entry_hash).where(LogEntry.seq == 2)).one()
    text = harness.client.get("/ledger").get_data(as_text=True)
    for doc in issued:  # nothing that finds or names a document
        for secret in (doc["code"], doc["sha256"], doc["document_id"]):
            assert str(secret) not in text


def test_a_pinned_entry_is_checked_by_its_place(harness: Harness) -> None:
    harness.register_seal()
    _issue(harness, 2)
    first = harness.client.get("/ledger/1").get_json()
    second = harness.client.get("/ledger/2").get_json()
    assert first["seq"] == 1 and first["prev_hash"] == "0" * 64
    assert second["prev_hash"] == first["entry_hash"]
    missing = harness.client.get("/ledger/3")
    assert missing.status_code == 404
    assert missing.get_json()["type"].endswith("/not-found")
    for bad in ("abc", "-1", "1.5"):  # not a place: no such route, a 404 problem
        assert harness.client.get(f"/ledger/{bad}").status_code == 404


def test_a_place_beyond_what_the_log_can_hold_is_not_found(harness: Harness) -> None:
    """A witness asking for a place too large for the column (failed before: SQLite cannot
    bind an integer beyond 2**63 - 1, a 500 instead of a 404)."""
    for seq in (2**31, 2**63, 10**30):
        problem_of(harness.client.get(f"/ledger/{seq}"), 404, "not-found")
