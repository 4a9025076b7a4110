"""On PostgreSQL, with several consumers at once: the issuance lock keeps the hash chain
linear and the application to one valid certificate. Needs the real PostgreSQL on 127.0.0.1
(like every ``real`` test, it fails loudly when it cannot reach it).

A court's seal replaced while a certificate is being issued: the issuance holds the seal (a
share lock) from the moment it reads it until it commits, so the replacement waits for it, and
an issuance that starts during a replacement waits and uses the new seal. It used to read the
seal without a lock: a certificate committed after the replacement still bore the old seal.

And two writers of one seal at once: a court's first seal registered by two admins at once is
one seal, the second answered as if it had come a moment later (it was a 500: both looked,
found none, and the primary key refused the second at commit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from servicekit.db import utcnow
from servicekit.envelope import CloudEvent
from servicekit.testing import pg_databases, problem_of
from services.documents import issuance, ledger
from services.documents.models import Document, LogEntry, Seal
from services.documents.tests.conftest import (
    COURT,
    COURT_NAME,
    SEAL_NAME,
    Harness,
    certificate_request,
    harness_on,
)

pytestmark = pytest.mark.real
REQUESTED = "matters.certificate.requested"
NEW_SEAL_NAME = "广州市中级人民法院诉讼服务专用章（2026）"


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Harness]:
    with pg_databases(["documents"]) as urls:
        yield from harness_on(urls["documents"], tmp_path)


def _consume(h: Harness, requests: list[dict[str, object]], errors: list[BaseException]) -> None:
    try:
        for data in requests:
            with h.rt.db.transaction() as session:
                h.handlers[REQUESTED](session, CloudEvent(REQUESTED, "/matters", data))
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def _run(h: Harness, batches: list[list[dict[str, object]]]) -> None:
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_consume, args=(h, b, errors)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def test_consumers_in_parallel_keep_one_linear_chain(pg: Harness) -> None:
    pg.register_seal()
    _run(pg, [[certificate_request() for _ in range(5)] for _ in range(3)])
    with pg.rt.db.transaction() as session:
        check = ledger.verify_chain(session)
    assert check.ok and check.entries == 15


def test_two_requests_for_one_application_at_once_issue_one_certificate(
        pg: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    pg.register_seal()
    both_rendering = threading.Barrier(2, timeout=30)
    real_render = pg.docs.renderer.render

    def render_together(certificate):  # type: ignore[no-untyped-def]
        both_rendering.wait()  # both have looked, found nothing and are rendering now
        return real_render(certificate)

    monkeypatch.setattr(pg.docs.renderer, "render", render_together)
    first = certificate_request()
    second = certificate_request(application_id=first["application_id"])
    _run(pg, [[first], [second]])
    with pg.rt.db.transaction() as session:
        docs = list(session.scalars(select(Document)))
        assert ledger.verify_chain(session).ok
    assert len(docs) == 1
    issued = pg.emitted("documents.document.issued")
    assert len(issued) == 2
    assert {e["data"]["document_id"] for e in issued} == {docs[0].id}
    assert {e["data"]["request_id"] for e in issued} == {first["request_id"],
                                                           second["request_id"]}


@pytest.mark.parametrize(("precondition", "status", "slug"), [
    ({}, 428, "precondition-required"),
    ({"If-None-Match": "*"}, 412, "precondition-failed")])
def test_a_first_seal_registered_twice_at_once_is_one_seal(
        pg: Harness, precondition: dict[str, str], status: int, slug: str) -> None:
    """The second admin gets what a moment later would have given: the seal exists now."""
    engine = create_engine(pg.rt.db.url)
    try:
        with Session(engine) as first, ThreadPoolExecutor(1) as pool:  # not yet committed
            first.add(Seal(court=COURT, court_name=COURT_NAME, seal_name=SEAL_NAME, version=1,
                           registered_by="first-admin", updated_at=utcnow()))
            first.flush()
            second = pool.submit(pg.client.post, "/seals", json={
                "court": COURT, "court_name": COURT_NAME, "seal_name": "另一枚印章"},
                headers={**pg.token("court_admin"), **precondition})
            time.sleep(0.5)  # the second looks, finds none, and waits on the primary key
            first.commit()
            resp = second.result(timeout=30)
    finally:
        engine.dispose()
    problem_of(resp, status, slug)
    with pg.rt.db.transaction() as session:
        seals = list(session.scalars(select(Seal)))
    assert [(s.seal_name, s.version, s.registered_by) for s in seals] == [
        (SEAL_NAME, 1, "first-admin")]


def test_a_certificate_issued_after_its_seal_was_replaced_bears_the_new_seal(
        pg: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    pg.register_seal()
    replaced = threading.Event()
    rendered_with: list[str] = []
    real_render = pg.docs.renderer.render

    def render_after_the_replacement(certificate):  # type: ignore[no-untyped-def]
        rendered_with.append(certificate.seal_name)
        replaced.wait(timeout=10)  # still rendering when the replacement commits
        return real_render(certificate)

    monkeypatch.setattr(pg.docs.renderer, "render", render_after_the_replacement)
    engine = create_engine(pg.rt.db.url)
    try:
        with engine.connect() as admin, ThreadPoolExecutor(1) as pool:
            tx = admin.begin()  # the court admin's replacement, in progress
            admin.execute(text("SELECT court FROM seals WHERE court = :c FOR UPDATE"),
                          {"c": COURT})
            issuing = pool.submit(_run, pg, [[certificate_request()]])
            time.sleep(0.5)  # the issuance reaches the seal the replacement holds
            admin.execute(text("UPDATE seals SET seal_name = :name, version = version + 1 "
                               "WHERE court = :c"), {"name": NEW_SEAL_NAME, "c": COURT})
            tx.commit()
            replaced.set()
            issuing.result(timeout=60)
    finally:
        engine.dispose()
    assert rendered_with == [NEW_SEAL_NAME]
    [issued] = pg.emitted("documents.document.issued")
    with pg.rt.db.transaction() as session:
        assert session.get(Document, issued["data"]["document_id"]) is not None


def test_a_place_beyond_the_logs_integer_column_is_not_found(pg: Harness) -> None:
    """``issuance_log.seq`` is a 32-bit INTEGER on PostgreSQL: a place just past it, which the
    gateway lets anyone ask for, was handed to the database and overflowed (a 500)."""
    for seq in (2**31, 2**63):
        problem_of(pg.client.get(f"/ledger/{seq}"), 404, "not-found")


def test_an_issuance_that_reaches_the_log_second_is_not_timed_before_the_first(
        pg: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A is stamped first and renders slowly; B, stamped five seconds later, reaches the
    issuance log first. A is stamped again with B's time and rendered again, so the log's
    times never decrease along its places (they used to: A's entry came after B's, earlier)."""
    pg.register_seal()
    stamped_at = utcnow().replace(microsecond=0)
    times = {"A": stamped_at, "B": stamped_at + timedelta(seconds=5)}
    monkeypatch.setattr(issuance, "legal_now", lambda: times[threading.current_thread().name])
    b_committed = threading.Event()
    renders: list[tuple[str, datetime, bytes]] = []
    real_render = pg.docs.renderer.render

    def render(certificate):  # type: ignore[no-untyped-def]
        name = threading.current_thread().name
        if name == "A":
            b_committed.wait(timeout=30)  # still rendering when B commits
        pdf = real_render(certificate)
        renders.append((name, certificate.issued_at, pdf))
        return pdf

    monkeypatch.setattr(pg.docs.renderer, "render", render)
    requests = {"A": certificate_request(), "B": certificate_request()}
    errors: list[BaseException] = []

    def issue(name: str) -> None:
        _consume(pg, [requests[name]], errors)
        if name == "B":
            b_committed.set()

    threads = [threading.Thread(target=issue, args=(n,), name=n) for n in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    with pg.rt.db.transaction() as session:
        entries = list(session.scalars(select(LogEntry).order_by(LogEntry.seq)))
        assert ledger.verify_chain(session).ok
        docs = {d.application_id: d for d in session.scalars(select(Document))}
    assert [e.issued_at for e in entries] == [times["B"], times["B"]]
    a_doc = docs[requests["A"]["application_id"]]
    assert (entries[1].document_id, a_doc.issued_at) == (a_doc.id, times["B"])
    assert [(n, t) for n, t, _ in renders] == [("B", times["B"]), ("A", times["A"]),
                                               ("A", times["B"])]
    assert pg.docs.blobs.get(a_doc.sha256) == renders[-1][2]  # the document is the second
