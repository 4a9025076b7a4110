"""Legal persons: registration with the business licence (checked by content), review by the
chosen court's staff within five working days, sign-in with the USCC once approved."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from sqlalchemy import select

from ecourt.contracts import validate_event
from servicekit.tables import outbox
from services.identity import organizations_domain as rules
from services.identity.tests.conftest import PASSWORD, Identity

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"0" * 64
VALID_USCC = "91350100M000100Y43"
FLAGGED_USCC = "911100001000188888"  # well formed, check character should be R


def licence(data: bytes = PNG, name: str = "licence.png",
            ctype: str = "image/png") -> tuple[io.BytesIO, str, str]:
    return io.BytesIO(data), name, ctype


def register_org(identity: Identity, token: str, *, uscc: str = VALID_USCC,
                 court: str = "粤01", file: Any = None, **overrides: Any):  # type: ignore[no-untyped-def]
    form = {"name": "广州示例科技有限公司", "uscc": uscc, "legal_representative": "王五",
            "court": court, "password": PASSWORD, **overrides}
    form["licence"] = file or licence()
    return identity.call("POST", "/organizations", token=token, data=form,
                         content_type="multipart/form-data")


@pytest.fixture
def setup(identity: Identity) -> dict[str, Any]:
    """An individual, the 粤01 administrator and a registry reviewer of 粤01."""
    _, admin = identity.admin("粤01")
    reviewer = identity.add_staff(admin["access_token"], roles=["registry_reviewer"],
                                  department="立案庭")
    person, _ = identity.register()
    return {"person": person, "token": identity.tokens(person["phone"])["access_token"],
            "admin": admin["access_token"],
            "reviewer": identity.tokens(reviewer["phone"])["access_token"]}


def read_etag(identity: Identity, path: str, token: str) -> dict[str, str]:
    """``If-Match`` with the ETag of ``path`` as ``token``'s holder just read it: what a
    reviewer's client sends with approve or reject."""
    resp = identity.call("GET", path, token=token)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {"If-Match": resp.headers["ETag"]}


def _events(identity: Identity) -> list[dict[str, Any]]:
    with identity.rt.db.transaction() as s:
        return [json.loads(b) for b in s.scalars(select(outbox.c.body)).all()]


@pytest.mark.parametrize(("code", "ok"), [
    ("91350100M000100Y43", True), ("91110000600037341L", True),
    ("911100001000188888", False), ("91350100M000100Y4", False),
    ("91350100M000100YI3", False), ("91350100m000100y43", False)])
def test_uscc_check_character(code: str, ok: bool) -> None:
    assert rules.uscc_check_ok(code) is ok


def test_uscc_well_formed_and_check_char() -> None:
    assert rules.uscc_well_formed("911100001000188888")
    assert not rules.uscc_well_formed("91110000100018888O")  # O is not in the alphabet
    assert rules.uscc_check_char("91110000100018888") == "R"
    assert rules.license_no_valid("14401201810000001")
    assert not rules.license_no_valid("1440120181000000")
    assert not rules.license_no_valid("14401201810000001\n")  # String(17): a 500 on PostgreSQL
    assert not rules.license_no_valid("1440120181000000\u0661")


def test_registration_review_and_sign_in_with_the_uscc(identity: Identity,
                                                        setup: dict[str, Any]) -> None:
    resp = register_org(identity, setup["token"])
    assert resp.status_code == 201, resp.get_data(as_text=True)
    org = resp.get_json()
    assert org["status"] == "pending" and org["uscc_check_failed"] is False
    assert org["licence"]["content_type"] == "image/png"
    assert org["remaining_label"].startswith("剩余")

    # cannot sign in while in review, and says why
    refused = identity.login(VALID_USCC)
    assert refused.status_code == 403
    assert refused.get_json()["type"].endswith("/organization-pending-review")

    mine = identity.call("GET", "/organizations/mine", token=setup["token"]).get_json()
    assert [o["id"] for o in mine["items"]] == [org["id"]]

    listed = identity.call("GET", "/organizations/reviews?status=pending",
                           token=setup["reviewer"])
    assert listed.status_code == 200
    assert [o["id"] for o in listed.get_json()["items"]] == [org["id"]]
    detail = identity.call("GET", f"/organizations/{org['id']}", token=setup["reviewer"])
    assert detail.get_json()["uscc"] == VALID_USCC
    scan = identity.call("GET", f"/organizations/{org['id']}/licence", token=setup["reviewer"])
    assert scan.status_code == 200 and scan.mimetype == "image/png" and scan.data == PNG

    approved = identity.call("POST", f"/organizations/{org['id']}/approve",
                             token=setup["reviewer"], headers={"If-Match": detail.headers["ETag"]})
    assert approved.status_code == 200 and approved.get_json()["status"] == "approved"
    again = identity.call("POST", f"/organizations/{org['id']}/approve", token=setup["admin"],
                          headers=read_etag(identity, f"/organizations/{org['id']}",
                                            setup["admin"]))
    assert again.status_code == 409

    tokens = identity.tokens(VALID_USCC)
    claims = identity.rt.verifier.verify(tokens["access_token"])  # type: ignore[union-attr]
    assert claims["kind"] == "organization" and claims["roles"] == ["party"]
    me = identity.call("GET", "/accounts/me", token=tokens["access_token"]).get_json()
    assert me["name"] == "广州示例科技有限公司" and me["phone_masked"] is None

    # the organization's notices go to the registrant's phone
    contact = identity.internal(f"/internal/accounts/{org['id']}/contact")
    assert contact.get_json() == {"account_id": org["id"], "phone": setup["person"]["phone"]}

    events = _events(identity)
    types = [e["type"] for e in events]
    assert "identity.organization.registered" in types
    assert "identity.organization.approved" in types
    for event in events:
        validate_event(event)
    approved_event = next(e for e in events if e["type"] == "identity.organization.approved")
    assert approved_event["data"]["applicant_account_id"] == org["applicant_account_id"]


def test_a_failed_check_character_is_flagged_not_refused(identity: Identity,
                                                          setup: dict[str, Any]) -> None:
    resp = register_org(identity, setup["token"], uscc=FLAGGED_USCC.lower())
    assert resp.status_code == 201
    assert resp.get_json()["uscc_check_failed"] is True
    assert resp.get_json()["uscc"] == FLAGGED_USCC
    [item] = identity.call("GET", "/organizations/reviews", token=setup["reviewer"]
                           ).get_json()["items"]
    assert item["uscc_check_failed"] is True
    [event] = [e for e in _events(identity) if e["type"] == "identity.organization.registered"]
    assert event["data"]["uscc_check_failed"] is True
    validate_event(event)


@pytest.mark.parametrize("code", ["91350100M000100Y4", "91350100M000100YO3", "九1350100M000100Y43"])
def test_a_malformed_uscc_is_refused(identity: Identity, setup: dict[str, Any],
                                     code: str) -> None:
    resp = register_org(identity, setup["token"], uscc=code)
    assert resp.status_code == 422
    assert "uscc" in resp.get_json()["errors"]
    assert [e for e in _events(identity) if e["type"].startswith("identity.organization")] == []


@pytest.mark.parametrize("field", ["name", "legal_representative"])
def test_a_nul_in_a_form_field_is_refused_and_nothing_kept(
        identity: Identity, setup: dict[str, Any], field: str) -> None:
    """U+0000 in a multipart text field: 422 naming the field, as in JSON it is 400; it
    used to reach the insert (PostgreSQL: 500, its text cannot hold it; SQLite: kept)."""
    resp = register_org(identity, setup["token"], **{field: "广州\x00示例"})
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert field in resp.get_json()["errors"]["form"]
    mine = identity.call("GET", "/organizations/mine", token=setup["token"])
    assert mine.get_json()["items"] == []
    assert register_org(identity, setup["token"]).status_code == 201


def test_a_name_longer_than_an_accounts_is_refused(identity: Identity,
                                                   setup: dict[str, Any]) -> None:
    """The organization's account holds its name in 100 characters: 101 used to pass the
    form (max 200) and meet that column (PostgreSQL: 500; SQLite: kept whole)."""
    resp = register_org(identity, setup["token"], name="广" * 101)
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert "name" in resp.get_json()["errors"]["form"]
    mine = identity.call("GET", "/organizations/mine", token=setup["token"])
    assert mine.get_json()["items"] == []
    assert register_org(identity, setup["token"], name="广" * 100).status_code == 201


def test_a_duplicate_uscc_is_a_conflict(identity: Identity, setup: dict[str, Any]) -> None:
    assert register_org(identity, setup["token"]).status_code == 201
    assert register_org(identity, setup["token"]).status_code == 409


def test_an_unknown_court_is_refused(identity: Identity, setup: dict[str, Any]) -> None:
    resp = register_org(identity, setup["token"], court="琼99")
    assert resp.status_code == 422 and "court" in resp.get_json()["errors"]


def test_an_oversize_licence_is_refused(identity: Identity, setup: dict[str, Any]) -> None:
    big = PNG + b"\x00" * (20 * 1024 * 1024)
    resp = register_org(identity, setup["token"], file=licence(big))
    assert resp.status_code == 413
    assert resp.content_type == "application/problem+json"


def test_content_that_is_not_the_declared_type_is_refused(identity: Identity,
                                                           setup: dict[str, Any]) -> None:
    resp = register_org(identity, setup["token"], file=licence(PNG, "licence.pdf",
                                                               "application/pdf"))
    assert resp.status_code == 415
    resp = register_org(identity, setup["token"], file=licence(b"MZ\x90\x00 not an image",
                                                               "licence.png"))
    assert resp.status_code == 415


@pytest.mark.parametrize("name", ["../../etc/passwd.png", "C:\\licence.png", "a/b.png"])
def test_a_path_in_the_file_name_is_refused(identity: Identity, setup: dict[str, Any],
                                            name: str) -> None:
    resp = register_org(identity, setup["token"], file=licence(PNG, name))
    assert resp.status_code == 422
    assert resp.get_json()["type"].endswith("/unsafe-filename")


def test_a_png_named_pdf_is_taken_as_png_by_content(identity: Identity,
                                                    setup: dict[str, Any]) -> None:
    resp = register_org(identity, setup["token"], file=licence(PNG, "licence.pdf",
                                                               "application/octet-stream"))
    assert resp.status_code == 201
    assert resp.get_json()["licence"]["content_type"] == "image/png"
    pdf = register_org(identity, setup["token"], uscc="91110000600037341L",
                       file=licence(PDF, "scan.pdf", "application/pdf"))
    assert pdf.status_code == 201 and pdf.get_json()["licence"]["content_type"] == \
        "application/pdf"


def test_reject_with_a_reason(identity: Identity, setup: dict[str, Any]) -> None:
    org = register_org(identity, setup["token"]).get_json()
    no_reason = identity.call("POST", f"/organizations/{org['id']}/reject", json={},
                              token=setup["reviewer"])
    assert no_reason.status_code == 422
    resp = identity.call("POST", f"/organizations/{org['id']}/reject",
                         json={"reason": "营业执照扫描件不清晰"}, token=setup["reviewer"],
                         headers=read_etag(identity, f"/organizations/{org['id']}",
                                           setup["reviewer"]))
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "rejected"
    assert resp.get_json()["reason"] == "营业执照扫描件不清晰"
    refused = identity.login(VALID_USCC)
    assert refused.status_code == 403
    assert refused.get_json()["type"].endswith("/organization-rejected")
    [event] = [e for e in _events(identity) if e["type"] == "identity.organization.rejected"]
    validate_event(event)
    assert event["data"]["reason"] == "营业执照扫描件不清晰"
    rejected = identity.call("GET", "/organizations/reviews?status=rejected",
                             token=setup["reviewer"]).get_json()["items"]
    assert [o["id"] for o in rejected] == [org["id"]]


def test_staff_of_another_court_get_404(identity: Identity, setup: dict[str, Any]) -> None:
    org = register_org(identity, setup["token"]).get_json()
    _, other = identity.admin("粤02")
    token = other["access_token"]
    for method, path in [("GET", f"/organizations/{org['id']}"),
                         ("GET", f"/organizations/{org['id']}/licence"),
                         ("POST", f"/organizations/{org['id']}/approve")]:
        assert identity.call(method, path, token=token).status_code == 404, path
    resp = identity.call("POST", f"/organizations/{org['id']}/reject",
                         json={"reason": "x"}, token=token)
    assert resp.status_code == 404
    assert identity.call("GET", "/organizations/reviews", token=token).get_json() == {
        "items": []}


def test_a_party_cannot_review(identity: Identity, setup: dict[str, Any]) -> None:
    org = register_org(identity, setup["token"]).get_json()
    for method, path in [("GET", "/organizations/reviews"),
                         ("POST", f"/organizations/{org['id']}/approve")]:
        assert identity.call(method, path, token=setup["token"]).status_code == 403
    other, _ = identity.register()
    other_token = identity.tokens(other["phone"])["access_token"]
    assert identity.call("GET", f"/organizations/{org['id']}",
                         token=other_token).status_code == 404


def test_a_judge_of_the_court_cannot_review(identity: Identity, setup: dict[str, Any]) -> None:
    judge = identity.add_staff(setup["admin"], roles=["judge"])
    token = identity.tokens(judge["phone"])["access_token"]
    assert identity.call("GET", "/organizations/reviews", token=token).status_code == 403


def test_no_id_number_or_phone_in_any_event(identity: Identity, setup: dict[str, Any]) -> None:
    org = register_org(identity, setup["token"]).get_json()
    approved = identity.call("POST", f"/organizations/{org['id']}/approve",
                             token=setup["reviewer"],
                             headers=read_etag(identity, f"/organizations/{org['id']}",
                                               setup["reviewer"]))
    assert approved.status_code == 200, approved.get_json()
    with identity.rt.db.transaction() as s:
        bodies = s.scalars(select(outbox.c.body)).all()
    for body in bodies:
        assert setup["person"]["phone"] not in body
        assert setup["person"]["id_number"] not in body
        assert VALID_USCC not in body
