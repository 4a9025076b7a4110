"""documents' reads take no write lock in the embedded tier: a court's seal, a document's
metadata and its PDF, the issuance log's head and an entry each began ``BEGIN IMMEDIATE``, so
a download queued behind every issuance and held the issuing consumer up while it ran; now
each answers while another connection holds the write lock, with the answer it gave before. A
refused download still puts its refusal on the audit trail, on PostgreSQL too, where the
reading transaction (READ ONLY) could write nothing: the web layer writes the entry in a
transaction of its own.

``GET /verify/<code>`` is not among them: it logs every verification (``verifications``)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from servicekit.tables import audit_trail
from servicekit.testing import problem_of, read_alike_while_writing
from services.documents.tests.conftest import COURT, Harness

#: each reading route and who reads it: the court's staff, or anyone (public)
READS = {
    "/seals/<court>": "staff",
    "/documents/<document_id>": "staff",
    "/documents/<document_id>/pdf": "staff",
    "/ledger": "public",
    "/ledger/<seq>": "public",
}
DOCUMENT_ROUTES = ("/documents/<document_id>", "/documents/<document_id>/pdf")


def _path(route: str, document_id: str) -> str:
    return route.replace("<court>", COURT).replace("<document_id>", document_id) \
        .replace("<seq>", "1")


def _issued(h: Harness) -> str:
    """The id of a certificate issued (the court's seal registered first)."""
    _, issued = h.issue_certificate()
    return str(issued["data"]["document_id"])


@pytest.mark.parametrize("route", READS)
def test_a_read_answers_while_another_connection_holds_the_write_lock(
        harness: Harness, route: str) -> None:
    h = harness
    path = _path(route, _issued(h))
    headers = h.token("clerk") if READS[route] == "staff" else {}
    read_alike_while_writing(h.rt.db.url, lambda: h.client.get(path, headers=headers))


@pytest.mark.parametrize("route", DOCUMENT_ROUTES)
def test_a_refused_download_is_on_the_audit_trail(on_db: Harness, route: str) -> None:
    h = on_db
    document_id = _issued(h)
    outsider = h.token("party", court=None, kind="individual", sub="acct-outsider")
    problem_of(h.client.get(_path(route, document_id), headers=outsider), 404, "not-found")
    with h.rt.db.transaction(reads_only=True) as session:
        [entry] = session.execute(select(audit_trail).where(
            audit_trail.c.subject == f"document:{document_id}",
            audit_trail.c.outcome == "denied")).all()
    assert (entry.action, entry.actor) == ("access.denied", "acct-outsider")
    assert json.loads(entry.detail) == {"method": "GET", "problem": "not-found", "status": 404,
                                        "route": route}
