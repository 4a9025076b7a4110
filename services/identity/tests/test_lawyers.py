"""Lawyer verification: online against the lawyer registry (verified at once, or refused with
the reason), offline through a face check and the chosen court's staff."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from sqlalchemy import select

from ecourt.contracts import validate_event
from servicekit.tables import outbox
from services.identity.adapters.face import DEV_DETAIL, DevFaceVerifier, FaceResult
from services.identity.adapters.lawyer_registry import FileLawyerRegistry
from services.identity.tests.conftest import Identity
from services.identity.tests.test_organizations import read_etag

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"0" * 64
# in services/identity/data/lawyer-registry.json: 张三, practising
LICENSE_NO, LAW_FIRM = "14401201910000002", "广东示例律师事务所"


@pytest.fixture
def setup(identity: Identity) -> dict[str, Any]:
    _, admin = identity.admin("粤01")
    reviewer = identity.add_staff(admin["access_token"], roles=["registry_reviewer"])
    person, account = identity.register(name="张三")
    return {"person": person, "account": account,
            "token": identity.tokens(person["phone"])["access_token"],
            "admin": admin["access_token"],
            "reviewer": identity.tokens(reviewer["phone"])["access_token"]}


def _events(identity: Identity, prefix: str = "identity.lawyer") -> list[dict[str, Any]]:
    with identity.rt.db.transaction() as s:
        bodies = [json.loads(b) for b in s.scalars(select(outbox.c.body)).all()]
    return [b for b in bodies if b["type"].startswith(prefix)]


def online(identity: Identity, token: str, **overrides: str):  # type: ignore[no-untyped-def]
    body = {"method": "online", "license_no": LICENSE_NO, "law_firm": LAW_FIRM, **overrides}
    return identity.call("POST", "/lawyer-verifications", json=body, token=token)


def offline(identity: Identity, token: str, court: str = "粤01", **files: Any):  # type: ignore[no-untyped-def]
    form: dict[str, Any] = {"method": "offline", "court": court,
                            "license_no": "14401202110000099", "law_firm": "广州某律师事务所",
                            "certificate": (io.BytesIO(PDF), "certificate.pdf",
                                            "application/pdf"),
                            "id_card": (io.BytesIO(PNG), "id.png", "image/png"), **files}
    return identity.call("POST", "/lawyer-verifications", data=form, token=token,
                         content_type="multipart/form-data")


def _claims(identity: Identity, phone: str) -> dict[str, Any]:
    tokens = identity.tokens(phone)
    return identity.rt.verifier.verify(tokens["access_token"])  # type: ignore[union-attr,no-any-return]


def test_the_file_registry_and_the_dev_face_check() -> None:
    found = FileLawyerRegistry().lookup(LICENSE_NO)
    assert found is not None and found.name == "张三" and found.status == "practising"
    assert FileLawyerRegistry().lookup("00000000000000000") is None
    assert DevFaceVerifier().verify(account_id="a", name="b", id_card_sha256="c") == \
        FaceResult(True, "development face check: no real verification performed")


def test_online_verification_adds_the_lawyer_role(identity: Identity,
                                                  setup: dict[str, Any]) -> None:
    assert "lawyer" not in _claims(identity, setup["person"]["phone"])["roles"]
    resp = online(identity, setup["token"])
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.get_json()["status"] == "verified"
    assert _claims(identity, setup["person"]["phone"])["roles"] == ["party", "lawyer"]
    mine = identity.call("GET", "/lawyer-verifications/mine", token=setup["token"]).get_json()
    assert [v["status"] for v in mine["items"]] == ["verified"]
    [event] = _events(identity)
    validate_event(event)
    assert event["data"] == {**event["data"], "account_id": setup["account"]["id"],
                             "name": "张三", "license_no": LICENSE_NO, "law_firm": LAW_FIRM,
                             "method": "online"}
    assert "court" not in event["data"]
    assert online(identity, setup["token"]).status_code == 409


@pytest.mark.parametrize(("overrides", "words"), [
    ({"license_no": "14401201810000001"}, "another name"),   # 王律师's certificate
    ({"law_firm": "别的律师事务所"}, "another law firm"),
    ({"license_no": "99999999999999999"}, "no practising certificate"),
])
def test_online_mismatch_is_refused_with_the_reason(identity: Identity, setup: dict[str, Any],
                                                   overrides: dict[str, str],
                                                   words: str) -> None:
    resp = online(identity, setup["token"], **overrides)
    assert resp.status_code == 422
    assert words in resp.get_json()["detail"]
    assert "lawyer" not in _claims(identity, setup["person"]["phone"])["roles"]
    assert _events(identity) == []


def test_a_revoked_certificate_is_refused(identity: Identity) -> None:
    person, _ = identity.register(name="赵六")
    token = identity.tokens(person["phone"])["access_token"]
    resp = online(identity, token, license_no="13101201210000004", law_firm="上海样例律师事务所")
    assert resp.status_code == 422 and "not in force" in resp.get_json()["detail"]


def test_a_malformed_certificate_number_is_refused(identity: Identity,
                                                   setup: dict[str, Any]) -> None:
    resp = online(identity, setup["token"], license_no="1440120191000000X")
    assert resp.status_code == 422 and "license_no" in resp.get_json()["errors"]
    resp = identity.call("POST", "/lawyer-verifications", json={"method": "online"},
                         token=setup["token"])
    assert resp.status_code == 422


def test_offline_is_approved_by_that_courts_staff(identity: Identity,
                                                  setup: dict[str, Any]) -> None:
    resp = offline(identity, setup["token"])
    assert resp.status_code == 201, resp.get_data(as_text=True)
    applied = resp.get_json()
    assert applied["status"] == "pending" and applied["face_check"] == DEV_DETAIL
    assert "lawyer" not in _claims(identity, setup["person"]["phone"])["roles"]
    assert offline(identity, setup["token"]).status_code == 409  # one pending at a time

    [item] = identity.call("GET", "/lawyer-verifications/reviews?status=pending",
                           token=setup["reviewer"]).get_json()["items"]
    assert item["id"] == applied["id"] and item["name"] == "张三"
    cert = identity.call("GET", f"/lawyer-verifications/{applied['id']}/files/certificate",
                         token=setup["reviewer"])
    assert cert.status_code == 200 and cert.mimetype == "application/pdf" and cert.data == PDF
    card = identity.call("GET", f"/lawyer-verifications/{applied['id']}/files/id_card",
                         token=setup["reviewer"])
    assert card.mimetype == "image/png" and card.data == PNG
    assert identity.call("GET", f"/lawyer-verifications/{applied['id']}/files/other",
                         token=setup["reviewer"]).status_code == 404

    # another court's staff and the applicant cannot review it
    _, other = identity.admin("粤02")
    assert identity.call("POST", f"/lawyer-verifications/{applied['id']}/approve",
                         token=other["access_token"]).status_code == 404
    assert identity.call("POST", f"/lawyer-verifications/{applied['id']}/approve",
                         token=setup["token"]).status_code == 403

    done = identity.call("POST", f"/lawyer-verifications/{applied['id']}/approve",
                         token=setup["reviewer"],
                         headers=read_etag(identity, f"/lawyer-verifications/{applied['id']}",
                                           setup["reviewer"]))
    assert done.status_code == 200 and done.get_json()["status"] == "verified"
    assert _claims(identity, setup["person"]["phone"])["roles"] == ["party", "lawyer"]
    [asked] = _events(identity, "identity.lawyer.verification_requested")
    validate_event(asked)  # the court's reviewers are told to expect the originals
    assert asked["data"]["court"] == "粤01" and asked["data"]["verification_id"] == applied["id"]
    [event] = _events(identity, "identity.lawyer.verified")
    validate_event(event)
    assert event["data"]["method"] == "offline" and event["data"]["court"] == "粤01"


def test_offline_rejected_with_a_reason(identity: Identity, setup: dict[str, Any]) -> None:
    applied = offline(identity, setup["token"]).get_json()
    resp = identity.call("POST", f"/lawyer-verifications/{applied['id']}/reject",
                         json={"reason": "执业证原件与扫描件不符"}, token=setup["admin"],
                         headers=read_etag(identity, f"/lawyer-verifications/{applied['id']}",
                                           setup["admin"]))
    assert resp.status_code == 200 and resp.get_json()["status"] == "rejected"
    [event] = _events(identity, "identity.lawyer.rejected")
    validate_event(event)
    assert event["data"]["reason"] == "执业证原件与扫描件不符"
    mine = identity.call("GET", "/lawyer-verifications/mine", token=setup["token"]).get_json()
    assert mine["items"][0]["reason"] == "执业证原件与扫描件不符"


def test_offline_uploads_are_checked(identity: Identity, setup: dict[str, Any]) -> None:
    bad = offline(identity, setup["token"],
                  certificate=(io.BytesIO(b"GIF89a..."), "c.gif", "image/gif"))
    assert bad.status_code == 415
    path = offline(identity, setup["token"],
                   id_card=(io.BytesIO(PNG), "../id.png", "image/png"))
    assert path.status_code == 422
    missing = identity.call("POST", "/lawyer-verifications", token=setup["token"],
                            data={"method": "offline", "court": "粤01",
                                  "license_no": "14401202110000099", "law_firm": "某所"},
                            content_type="multipart/form-data")
    assert missing.status_code == 422


def test_a_nul_in_an_offline_form_field_is_refused_and_nothing_kept(
        identity: Identity, setup: dict[str, Any]) -> None:
    """U+0000 in a multipart text field: 422 naming the field, as in JSON it is 400; it
    used to reach the insert (PostgreSQL: 500, its text cannot hold it; SQLite: kept)."""
    resp = offline(identity, setup["token"], law_firm="广州\x00律师事务所")
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert "law_firm" in resp.get_json()["errors"]["form"]
    mine = identity.call("GET", "/lawyer-verifications/mine", token=setup["token"])
    assert mine.get_json()["items"] == []
    assert offline(identity, setup["token"]).status_code == 201


def test_a_failed_face_check_stops_the_application(identity: Identity,
                                                   setup: dict[str, Any]) -> None:
    class Refusing:
        def verify(self, **_kw: str) -> FaceResult:
            return FaceResult(False, "face does not match")

    identity.rt.extras["face_verifier"] = Refusing()
    resp = offline(identity, setup["token"])
    assert resp.status_code == 422 and "face does not match" in resp.get_json()["detail"]


def test_no_id_number_or_phone_in_lawyer_events(identity: Identity,
                                                setup: dict[str, Any]) -> None:
    online(identity, setup["token"])
    for event in _events(identity, "identity."):
        body = json.dumps(event, ensure_ascii=False)
        assert setup["person"]["phone"] not in body
        assert setup["person"]["id_number"] not in body
