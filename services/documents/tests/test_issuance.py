"""Handlers: rendering on request, failures made visible, one valid certificate per
application, publishing, and the hash-chained issuance log."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timedelta

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from services.documents import codes, issuance, ledger, render
from services.documents.models import Document, LogEntry, RenderRequest
from services.documents.tests.conftest import (
    BASE_URL,
    COURT,
    Harness,
    certificate_request,
    completed,
)

REQUESTED = "matters.certificate.requested"
COMPLETED = "matters.application.completed"


def documents(h: Harness) -> list[Document]:
    with h.rt.db.transaction() as session:
        return list(session.scalars(select(Document)))


def outcome(h: Harness, request_id: str) -> RenderRequest:
    with h.rt.db.transaction() as session:
        row = session.get(RenderRequest, request_id)
    assert row is not None
    return row


def test_without_a_seal_the_request_fails_visibly_and_is_not_retried(harness: Harness) -> None:
    request = certificate_request()
    harness.deliver(REQUESTED, request)  # does not raise: a raise would retry forever
    failed = harness.emitted("documents.render.failed")
    assert [e["data"] for e in failed] == [{
        "request_id": request["request_id"], "application_id": request["application_id"],
        "court": COURT, "reason": "no official seal registered for court 粤01"}]
    assert documents(harness) == []
    assert outcome(harness, request["request_id"]).outcome == "failed"


def test_with_a_seal_the_certificate_is_rendered_stored_logged_and_announced(
        harness: Harness) -> None:
    harness.register_seal()
    request = certificate_request()
    harness.deliver(REQUESTED, request)
    [event] = harness.emitted("documents.document.issued")
    data = event["data"]
    assert set(data) == {"document_id", "request_id", "application_id", "case_number", "court",
                         "kind", "code", "sha256", "issued_at", "verify_url"}
    assert data["request_id"] == request["request_id"]
    assert data["kind"] == "effectiveness_certificate"
    assert data["verify_url"] == f"{BASE_URL}/verify/{data['code']}"
    assert codes.parse(data["code"])
    pdf = harness.docs.blobs.get(data["sha256"])
    assert hashlib.sha256(pdf).hexdigest() == data["sha256"]
    [doc] = documents(harness)
    assert (doc.id, doc.status, doc.published, doc.size) == (data["document_id"], "valid",
                                                             False, len(pdf))
    assert outcome(harness, request["request_id"]).outcome == "issued"
    with harness.rt.db.transaction() as session:
        assert ledger.verify_chain(session).ok
        assert session.scalar(select(func.count()).select_from(LogEntry)) == 1


def test_a_redelivered_request_renders_nothing_new(harness: Harness) -> None:
    harness.register_seal()
    request = certificate_request()
    harness.deliver(REQUESTED, request)
    harness.deliver(REQUESTED, request)  # the same request again (a new event id)
    first, second = harness.emitted("documents.document.issued")
    assert first["data"] == second["data"]
    assert len(documents(harness)) == 1


def test_a_regenerate_after_success_reannounces_the_same_document(harness: Harness) -> None:
    harness.register_seal()
    request = certificate_request()
    harness.deliver(REQUESTED, request)
    again = certificate_request(application_id=request["application_id"])
    harness.deliver(REQUESTED, again)
    first, second = harness.emitted("documents.document.issued")
    assert second["data"]["request_id"] == again["request_id"]
    for key in ("document_id", "code", "sha256", "issued_at"):
        assert first["data"][key] == second["data"][key]
    assert len(documents(harness)) == 1
    assert outcome(harness, again["request_id"]).outcome == "reissued"


def test_a_document_issued_while_rendering_wins_over_ours(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The re-check under the issuance lock: a late success found there is re-announced."""
    harness.register_seal()
    request = certificate_request()
    harness.deliver(REQUESTED, request)
    real, calls = issuance.valid_document, []

    def first_look_misses(session, application_id):  # type: ignore[no-untyped-def]
        calls.append(application_id)
        return None if len(calls) == 1 else real(session, application_id)

    monkeypatch.setattr(issuance, "valid_document", first_look_misses)
    harness.deliver(REQUESTED, certificate_request(application_id=request["application_id"]))
    assert len(calls) == 2
    first, second = harness.emitted("documents.document.issued")
    assert first["data"]["document_id"] == second["data"]["document_id"]
    assert len(documents(harness)) == 1


def test_the_database_refuses_a_second_valid_document(harness: Harness) -> None:
    harness.register_seal()
    request = certificate_request()
    harness.deliver(REQUESTED, request)
    [doc] = documents(harness)
    clone = {c.name: getattr(doc, c.name) for c in Document.__table__.columns}
    clone.update(id="another", code=codes.new_code())
    with pytest.raises(IntegrityError), harness.rt.db.transaction() as session:
        session.add(Document(**clone))
    clone.update(status="revoked")  # a revoked one beside it is fine
    with harness.rt.db.transaction() as session:
        session.add(Document(**clone))


def test_a_render_error_is_reported_not_raised(harness: Harness,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    harness.register_seal()

    def boom(_certificate):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("secret internals")

    monkeypatch.setattr(harness.docs.renderer, "render", boom)
    request = certificate_request()
    harness.deliver(REQUESTED, request)
    [failed] = harness.emitted("documents.render.failed")
    assert "could not be rendered" in failed["data"]["reason"]
    assert "secret" not in failed["data"]["reason"]
    assert documents(harness) == []


@pytest.mark.parametrize("bad", [{"effective_date": "next tuesday"},
                                 {"case_number": "号" * 101}, {"parties": "张三"},
                                 {"effective_date": "13800138000"}])
def test_a_malformed_request_fails_visibly(harness: Harness, bad: dict[str, object]) -> None:
    from servicekit.envelope import CloudEvent

    harness.register_seal()
    request = certificate_request(**bad)
    with harness.rt.db.transaction() as session:
        harness.handlers[REQUESTED](session, CloudEvent(REQUESTED, "/matters", request))
    [failed] = harness.emitted("documents.render.failed")
    assert "malformed" in failed["data"]["reason"]
    assert "13800138000" not in failed["data"]["reason"]  # the value quoted, masked


def test_publishing_lets_the_viewers_in(harness: Harness) -> None:
    harness.register_seal()
    request = certificate_request()
    harness.deliver(REQUESTED, request)
    [issued] = harness.emitted("documents.document.issued")
    harness.deliver(COMPLETED, completed(issued, request, ["other-party"]))
    [doc] = documents(harness)
    assert doc.published and doc.published_at is not None
    assert doc.published_at.microsecond == doc.issued_at.microsecond == 0  # legal times: to
    # the second (DESIGN), as the certificate and the verification page show them
    assert json.loads(doc.viewer_account_ids) == sorted(
        ["other-party", request["applicant_account_id"]])


def test_publishing_an_unknown_document_raises_for_the_dead_letter_queue(
        harness: Harness) -> None:
    request = certificate_request()
    fake = {"data": {"document_id": "no-such-document"}}
    with pytest.raises(issuance.PublishMismatch):
        harness.deliver(COMPLETED, completed(fake, request, []))


def _issue(h: Harness, n: int) -> None:
    h.register_seal()
    for _ in range(n):
        h.deliver(REQUESTED, certificate_request())


def test_the_hash_chain_verifies_and_links_every_entry(harness: Harness) -> None:
    _issue(harness, 4)
    with harness.rt.db.transaction() as session:
        entries = list(session.scalars(select(LogEntry).order_by(LogEntry.seq)))
        check = ledger.verify_chain(session)
    assert check.ok and check.entries == 4 and check.head_hash == entries[-1].entry_hash
    assert entries[0].prev_hash == ledger.GENESIS
    for before, after in zip(entries, entries[1:], strict=False):
        assert after.prev_hash == before.entry_hash


@pytest.mark.parametrize("tamper", ["sha256", "issued_at", "delete", "document"])
def test_the_hash_chain_detects_a_tampered_entry(harness: Harness, tamper: str) -> None:
    _issue(harness, 4)
    with harness.rt.db.transaction() as session:
        target = session.scalars(select(LogEntry).where(LogEntry.seq == 2)).one()
        if tamper == "sha256":
            target.sha256 = "0" * 64
        elif tamper == "issued_at":
            target.issued_at = target.issued_at.replace(year=2020)  # back-dated
        elif tamper == "delete":
            session.delete(target)
        else:
            # as someone with database access would: behind the ORM (and its audit trail)
            documents = Document.__table__
            session.execute(update(documents).where(documents.c.id == target.document_id)
                            .values(sha256="f" * 64))
    with harness.rt.db.transaction() as session:
        check = ledger.verify_chain(session)
    assert not check.ok
    assert check.broken_at in (2, 3)


def _log(h: Harness) -> list[LogEntry]:
    with h.rt.db.transaction() as session:
        return list(session.scalars(select(LogEntry).order_by(LogEntry.seq)))


def test_a_clock_set_back_never_makes_the_log_run_backwards(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's clock set back an hour after an issuance: the next certificate is stamped
    with the last entry's time, not before it, and printed with that time."""
    harness.register_seal()
    harness.deliver(REQUESTED, certificate_request())
    [first] = _log(harness)
    set_back = first.issued_at - timedelta(hours=1)
    monkeypatch.setattr(issuance, "legal_now", lambda: set_back)
    harness.deliver(REQUESTED, certificate_request())
    entries = _log(harness)
    assert [e.issued_at for e in entries] == [first.issued_at, first.issued_at]
    [_, event] = harness.emitted("documents.document.issued")
    assert datetime.fromisoformat(event["data"]["issued_at"]) == first.issued_at
    with harness.rt.db.transaction() as session:
        doc = session.get(Document, event["data"]["document_id"])
        assert doc is not None and doc.issued_at == first.issued_at
        assert ledger.verify_chain(session).ok
    pdf = harness.docs.blobs.get(event["data"]["sha256"])
    shown = render.local(first.issued_at).strftime("%Y-%m-%d %H:%M:%S")
    assert shown in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()


def test_an_entry_timed_before_its_predecessor_fails_verification(harness: Harness) -> None:
    """Back-dating by whoever appends keeps every hash sound; the time order gives it away."""
    _issue(harness, 3)
    first, second, third = _log(harness)
    earlier = first.issued_at - timedelta(days=30)
    with harness.rt.db.transaction() as session:
        session.execute(update(LogEntry).where(LogEntry.seq == 2).values(
            issued_at=earlier, entry_hash=ledger.entry_hash(
                2, second.document_id, second.code, second.sha256, earlier, second.prev_hash)))
        session.execute(update(LogEntry).where(LogEntry.seq == 3).values(
            prev_hash=ledger.entry_hash(2, second.document_id, second.code, second.sha256,
                                        earlier, second.prev_hash)))
    with harness.rt.db.transaction() as session:
        rehashed = session.get(LogEntry, 3)
        assert rehashed is not None
        session.execute(update(LogEntry).where(LogEntry.seq == 3).values(
            entry_hash=ledger.entry_hash(3, third.document_id, third.code, third.sha256,
                                         third.issued_at, rehashed.prev_hash)))
    with harness.rt.db.transaction() as session:
        check = ledger.verify_chain(session)
    assert (check.ok, check.broken_at) == (False, 2)
    assert check.problem is not None and "earlier than the entry before it" in check.problem
