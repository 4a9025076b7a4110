"""Every kind of account, and lawyers bound to their cases, driven through the gateway in
both tiers: a legal person from registration through court approval to sign-in; a lawyer
verified online and one offline; a binding approved by the clerk and one rejected — with the
SMS requests the notifier receives at each step."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.test import Client

from ecourt.embedded import Suite
from servicekit.testing import wait_for
from tests.factories import individual, uscc
from tests.harness import (
    PDF,
    Court,
    bearer,
    file,
    login,
    matters_knows_lawyer,
    online_lawyer,
    person,
    sms_for,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 256
@pytest.fixture(scope="module")
def court(suite: Suite) -> Court:
    return Court(suite, Client(suite.gateway), "粤01", "广州市中级人民法院")


def test_legal_person_from_registration_through_approval_to_sign_in(
        suite: Suite, court: Court) -> None:
    http = court.http
    applicant_id, applicant = person(http, "周经理")
    code = uscc()
    resp = http.post("/api/identity/organizations", headers=bearer(applicant), data={
        "name": "广州示例贸易有限公司", "uscc": code, "legal_representative": "周经理",
        "court": court.code, "password": "org-password-123",
        "licence": file(PNG, "营业执照.png", "image/png")})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    org = resp.get_json()
    assert org["status"] == "pending" and org["uscc_check_failed"] is False
    refused = http.post("/api/identity/tokens", json={"username": code,
                                                      "password": "org-password-123"})
    assert refused.status_code == 403  # not before the court approves

    reviewer = court.token("registry_reviewer")
    wait_for(lambda: sms_for(suite, court.id("registry_reviewer"), "organization_registered"),
             message="the reviewer's SMS")
    pending = http.get("/api/identity/organizations/reviews?status=pending",
                       headers=bearer(reviewer)).get_json()["items"]
    row = next(o for o in pending if o["id"] == org["id"])
    assert row["remaining_label"].startswith("剩余")
    licence = http.get(f"/api/identity/organizations/{org['id']}/licence",
                       headers=bearer(reviewer))
    assert licence.status_code == 200 and licence.content_type.startswith("image/png")
    assert http.post(f"/api/identity/organizations/{org['id']}/approve",
                     headers=bearer(applicant)).status_code == 403  # a party cannot review
    etag = http.get(f"/api/identity/organizations/{org['id']}",
                    headers=bearer(reviewer)).headers["ETag"]
    approved = http.post(f"/api/identity/organizations/{org['id']}/approve",
                         headers={**bearer(reviewer), "If-Match": etag})
    assert approved.status_code == 200, approved.get_data(as_text=True)
    [sms] = wait_for(lambda: sms_for(suite, applicant_id, "organization_approved"),
                     message="the applicant's SMS")
    assert "审核通过" in sms.text

    token = login(http, code, "org-password-123")
    me = http.get("/api/identity/accounts/me", headers=bearer(token)).get_json()
    assert me["kind"] == "organization" and "party" in me["roles"]


def test_organization_rejected_with_a_reason_is_told(suite: Suite, court: Court) -> None:
    http = court.http
    applicant_id, applicant = person(http, "吴经理")
    resp = http.post("/api/identity/organizations", headers=bearer(applicant), data={
        "name": "广州虚构科技有限公司", "uscc": uscc(), "legal_representative": "吴经理",
        "court": court.code, "password": "org-password-123",
        "licence": file(PNG, "licence.png", "image/png")})
    org_id = resp.get_json()["id"]
    reviewer = bearer(court.token("registry_reviewer"))
    etag = http.get(f"/api/identity/organizations/{org_id}", headers=reviewer).headers["ETag"]
    rejected = http.post(f"/api/identity/organizations/{org_id}/reject",
                         headers={**reviewer, "If-Match": etag},
                         json={"reason": "营业执照不清晰"})
    assert rejected.status_code == 200
    [sms] = wait_for(lambda: sms_for(suite, applicant_id, "organization_rejected"),
                     message="the rejection SMS")
    assert "营业执照不清晰" in sms.text


def _offline_lawyer(suite: Suite, court: Court) -> tuple[str, str]:
    http = court.http
    body = individual(name="李四")
    account_id = http.post("/api/identity/accounts", json=body).get_json()["id"]
    token = login(http, body["phone"], body["password"])
    applied = http.post("/api/identity/lawyer-verifications", headers=bearer(token), data={
        "method": "offline", "court": court.code, "license_no": "11101201510000003",
        "law_firm": "北京虚构律师事务所", "certificate": file(PNG, "执业证.png", "image/png"),
        "id_card": file(PNG, "身份证.png", "image/png")})
    assert applied.status_code in (200, 201, 202), applied.get_data(as_text=True)
    verification = applied.get_json()
    assert verification["status"] == "pending"
    wait_for(lambda: [m for m in sms_for(suite, court.id("registry_reviewer"),
                                         "lawyer_verification_requested") if "李四" in m.text],
             message="the reviewer's SMS")
    reviewer = court.token("registry_reviewer")
    pending = http.get("/api/identity/lawyer-verifications/reviews?status=pending",
                       headers=bearer(reviewer)).get_json()["items"]
    assert verification["id"] in {v["id"] for v in pending}
    etag = http.get(f"/api/identity/lawyer-verifications/{verification['id']}",
                    headers=bearer(reviewer)).headers["ETag"]
    approved = http.post(f"/api/identity/lawyer-verifications/{verification['id']}/approve",
                         headers={**bearer(reviewer), "If-Match": etag})
    assert approved.status_code == 200, approved.get_data(as_text=True)
    wait_for(lambda: sms_for(suite, account_id, "lawyer_verified"), message="the lawyer's SMS")
    return account_id, login(http, body["phone"], body["password"])


def test_lawyers_verified_online_and_offline_get_the_lawyer_role(suite: Suite,
                                                                 court: Court) -> None:
    for account_id, token in (online_lawyer(suite, court.http), _offline_lawyer(suite, court)):
        me = court.http.get("/api/identity/accounts/me", headers=bearer(token)).get_json()
        assert me["id"] == account_id and "lawyer" in me["roles"]


def test_binding_approved_by_the_clerk_and_one_rejected(suite: Suite, court: Court) -> None:
    http = court.http
    party_id, party = person(http, "周俊雄")
    case_id = court.case([("周俊雄", "plaintiff", party_id), ("黄添强", "defendant", None)],
                         effective="2021-07-01")
    case_number = http.get(f"/api/matters/cases/{case_id}",
                           headers=bearer(party)).get_json()["case_number"]
    lawyer_id, lawyer = wait_for(lambda: _lawyer_known_to_matters(suite, http),
                                 message="matters to learn of the lawyer")

    assert http.get(f"/api/matters/cases/{case_id}", headers=bearer(lawyer)).status_code == 404
    asked = http.post("/api/matters/bindings", headers=bearer(lawyer), data={
        "case_number": case_number, "party_name": "周俊雄",
        "letter": file(PDF, "授权委托书.pdf", "application/pdf")})
    assert asked.status_code == 201, asked.get_data(as_text=True)
    binding = asked.get_json()
    for role in ("judge", "clerk"):
        wait_for(lambda r=role: sms_for(suite, court.id(r), "binding_requested"),
                 message=f"the {role}'s SMS")
    path = f"/api/matters/bindings/{binding['id']}"
    etag = http.get(path, headers=bearer(court.token("clerk"))).headers["ETag"]
    approved = http.post(f"{path}/approve",
                         headers={**bearer(court.token("clerk")), "If-Match": etag})
    assert approved.status_code == 200, approved.get_data(as_text=True)
    wait_for(lambda: sms_for(suite, lawyer_id, "binding_approved"), message="lawyer told")
    wait_for(lambda: sms_for(suite, party_id, "binding_approved_party"), message="party told")
    assert http.get(f"/api/matters/cases/{case_id}", headers=bearer(lawyer)).status_code == 200

    other_id, other = _offline_lawyer(suite, court)
    wait_for(lambda: matters_knows_lawyer(suite, other_id),
             message="matters to learn of the second lawyer")
    asked = http.post("/api/matters/bindings", headers=bearer(other), data={
        "case_number": case_number, "party_name": "黄添强",
        "letter": file(PDF, "委托书.pdf", "application/pdf")})
    assert asked.status_code == 201, asked.get_data(as_text=True)
    path = f"/api/matters/bindings/{asked.get_json()['id']}"
    etag = http.get(path, headers=bearer(court.token("judge"))).headers["ETag"]
    rejected = http.post(f"{path}/reject", headers={**bearer(court.token("judge")),
                                                    "If-Match": etag},
                         json={"reason": "委托书未签字"})
    assert rejected.status_code == 200, rejected.get_data(as_text=True)
    [sms] = wait_for(lambda: sms_for(suite, other_id, "binding_rejected"), message="told")
    assert "委托书未签字" in sms.text
    assert http.get(f"/api/matters/cases/{case_id}", headers=bearer(other)).status_code == 404


_LAWYER: dict[int, tuple[str, str]] = {}


def _lawyer_known_to_matters(suite: Suite, http: Client) -> Any:
    """One online-verified lawyer per suite, once matters has its copy."""
    if id(suite) not in _LAWYER:
        _LAWYER[id(suite)] = online_lawyer(suite, http)
    account_id, token = _LAWYER[id(suite)]
    return (account_id, token) if matters_knows_lawyer(suite, account_id) else None
