"""The signed-in routes: the seal registry and who may download a document."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import select

from servicekit.tables import audit_trail
from services.documents.tests.conftest import (
    COURT,
    SEAL,
    Harness,
    completed,
)


def test_a_court_admin_registers_and_replaces_the_seal(harness: Harness) -> None:
    admin = harness.token("court_admin")
    first = harness.client.post("/seals", headers=admin, json=SEAL)
    assert first.status_code == 201
    assert first.get_json()["version"] == 1
    etag = first.headers["ETag"]
    again = harness.client.post("/seals", headers={**admin, "If-Match": etag},
                                json={**SEAL, "seal_name": "广州市中级人民法院立案专用章"})
    assert again.status_code == 200 and again.get_json()["version"] == 2
    stale = harness.client.post("/seals", headers={**admin, "If-Match": etag}, json=SEAL)
    assert stale.status_code == 412
    assert stale.content_type == "application/problem+json"
    got = harness.client.get(f"/seals/{COURT}", headers=harness.token("specialist"))
    assert got.status_code == 200
    assert got.get_json()["seal_name"] == "广州市中级人民法院立案专用章"
    assert got.headers["ETag"] == again.headers["ETag"]


@pytest.mark.parametrize(("roles", "court", "status"), [
    (("court_admin",), "粤02", 403),   # another court's admin
    (("specialist",), COURT, 403),     # staff, but not an admin
    (("party",), COURT, 403),
])
def test_only_that_courts_admin_may_register_its_seal(harness: Harness, roles: tuple[str, ...],
                                                      court: str, status: int) -> None:
    resp = harness.client.post("/seals", headers=harness.token(*roles, court=court), json=SEAL)
    assert resp.status_code == status
    assert resp.content_type == "application/problem+json"


def test_seal_requests_are_validated_and_need_a_token(harness: Harness) -> None:
    assert harness.client.post("/seals", json=SEAL).status_code == 401
    bad = harness.client.post("/seals", headers=harness.token("court_admin"),
                              json={"court": COURT})
    assert bad.status_code == 422
    assert set(bad.get_json()["errors"]["json"]) == {"court_name", "seal_name"}


def test_a_seal_is_read_by_its_own_courts_staff(harness: Harness) -> None:
    harness.register_seal()
    other = harness.client.get(f"/seals/{COURT}", headers=harness.token("judge", court="粤02"))
    assert other.status_code == 403
    missing = harness.client.get("/seals/粤02", headers=harness.token("judge", court="粤02"))
    assert missing.status_code == 404


# -- downloads ------------------------------------------------------------------------------
def test_download_access_before_and_after_publishing(harness: Harness) -> None:
    request, issued = harness.issue_certificate()
    doc_id = issued["data"]["document_id"]
    applicant = harness.token("party", court=None, sub=request["applicant_account_id"],
                              kind="individual")
    other_party = harness.token("party", court=None, kind="individual")
    staff_here = harness.token("clerk")
    staff_elsewhere = harness.token("clerk", court="粤02")
    pdf_url = f"/documents/{doc_id}/pdf"

    assert harness.client.get(pdf_url, headers=applicant).status_code == 404  # not published
    staff = harness.client.get(pdf_url, headers=staff_here)
    assert staff.status_code == 200 and staff.content_type == "application/pdf"
    assert hashlib.sha256(staff.data).hexdigest() == issued["data"]["sha256"]
    for outsider in (other_party, staff_elsewhere):
        for url in (pdf_url, f"/documents/{doc_id}"):
            resp = harness.client.get(url, headers=outsider)
            assert resp.status_code == 404 and resp.content_type == "application/problem+json"

    harness.deliver("matters.application.completed", completed(issued, request, []))
    party = harness.client.get(pdf_url, headers=applicant)
    assert party.status_code == 200 and party.data == staff.data
    meta = harness.client.get(f"/documents/{doc_id}", headers=applicant).get_json()
    assert meta["published"] is True and meta["code"] == issued["data"]["code"]
    assert harness.client.get(pdf_url, headers=other_party).status_code == 404
    assert harness.client.get(pdf_url).status_code == 401
    nothing = harness.client.get("/documents/no-such-id/pdf", headers=staff_here)
    assert nothing.status_code == 404


def test_staff_list_the_documents_of_an_application(harness: Harness) -> None:
    request, issued = harness.issue_certificate()
    url = f"/documents?application_id={request['application_id']}"
    mine = harness.client.get(url, headers=harness.token("specialist")).get_json()
    assert [d["id"] for d in mine["items"]] == [issued["data"]["document_id"]]
    elsewhere = harness.client.get(url, headers=harness.token("specialist", court="粤02"))
    assert elsewhere.get_json()["items"] == []
    party = harness.client.get(url, headers=harness.token("party", court=None))
    assert party.status_code == 403
    assert harness.client.get("/documents", headers=harness.token("judge")).status_code == 422


def test_a_missing_blob_is_an_alert_not_a_crash(harness: Harness) -> None:
    _request, issued = harness.issue_certificate()
    harness.docs.blobs.path_of(issued["data"]["sha256"]).write_bytes(b"%PDF-tampered")
    resp = harness.client.get(f"/documents/{issued['data']['document_id']}/pdf",
                              headers=harness.token("clerk"))
    assert resp.status_code == 503 and resp.content_type == "application/problem+json"


def test_the_audit_trail_holds_the_issuance_and_each_refused_download(
        harness: Harness) -> None:
    """The issuing consumer's change is a system entry; an outsider's 404 names the
    document it hid; a download of a missing document is no decision about anything."""
    _, issued = harness.issue_certificate()
    doc_id = issued["data"]["document_id"]
    outsider = harness.token("party", court=None, kind="individual", sub="acct-outsider")
    assert harness.client.get(f"/documents/{doc_id}/pdf", headers=outsider).status_code == 404
    assert harness.client.get("/documents/no-such-id/pdf", headers=outsider).status_code == 404
    with harness.rt.db.transaction() as session:
        rows = session.execute(select(audit_trail).where(
            audit_trail.c.subject == f"document:{doc_id}").order_by(audit_trail.c.id)).all()
        refusals = session.execute(select(audit_trail).where(
            audit_trail.c.outcome == "denied")).all()
    created, denied = rows
    assert (created.action, created.actor) == ("document.created", "system")
    assert json.loads(created.detail)["status"] == "valid"
    assert (denied.action, denied.actor, denied.outcome) == ("access.denied", "acct-outsider",
                                                             "denied")
    assert len(refusals) == 1
