"""Court staff: created and listed by their own court's administrator, found by other
services through the internal route, and disabled (sign-in and refresh refused at once)."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from servicekit.tables import audit_trail, outbox
from servicekit.web import SERVICE_TOKEN_HEADER
from services.identity.models import Account
from services.identity.tests.conftest import PASSWORD, Identity
from tests.factories import mobile


def _staff_body(**overrides: object) -> dict[str, object]:
    return {"name": "王书记员", "phone": mobile(), "password": PASSWORD, "roles": ["clerk"],
            "department": "立案庭", **overrides}


def _accounts(identity: Identity) -> int:
    with identity.rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(Account)) or 0


def test_a_court_admin_creates_staff_of_their_own_court(identity: Identity) -> None:
    _phone, admin = identity.admin("粤01")
    body = _staff_body(roles=["judge", "division_head"], department="民一庭")
    resp = identity.call("POST", "/staff", json=body, token=admin["access_token"])
    assert resp.status_code == 201, resp.get_data(as_text=True)
    created = resp.get_json()
    assert created["court"] == "粤01" and created["department"] == "民一庭"
    assert created["roles"] == ["judge", "division_head"] and created["status"] == "active"
    assert created["phone_masked"] == body["phone"][:3] + "****" + body["phone"][-4:]  # type: ignore[index]
    assert body["phone"] not in resp.get_data(as_text=True)
    assert "password" not in created
    with identity.rt.db.transaction() as s:
        account = s.get(Account, created["id"])
        events = [json.loads(b) for b in s.scalars(select(outbox.c.body)).all()]
    assert account is not None and account.id_number is None and account.kind == "staff"
    assert {"account_id": created["id"], "kind": "staff"}.items() <= next(
        e["data"] for e in events if e["subject"] == created["id"]).items()
    # naming their own court explicitly is fine as well
    same = identity.call("POST", "/staff", json=_staff_body(court="粤01"),
                         token=admin["access_token"])
    assert same.status_code == 201


def test_another_courts_admin_parties_and_strangers_cannot_create_staff(
        identity: Identity) -> None:
    _phone, admin = identity.admin("粤01")
    before = _accounts(identity)
    other = identity.call("POST", "/staff", json=_staff_body(court="粤02"),
                          token=admin["access_token"])
    assert other.status_code == 403 and other.content_type == "application/problem+json"
    person, _ = identity.register()
    party = identity.tokens(person["phone"])["access_token"]
    assert identity.call("POST", "/staff", json=_staff_body(), token=party).status_code == 403
    judge = identity.add_staff(admin["access_token"], roles=["judge"])
    judge_token = identity.tokens(judge["phone"])["access_token"]
    assert identity.call("POST", "/staff", json=_staff_body(),
                         token=judge_token).status_code == 403
    nobody = identity.call("POST", "/staff", json=_staff_body())
    assert nobody.status_code == 401
    assert _accounts(identity) == before + 2  # the party and the judge, nobody else


def test_staff_input_is_validated_and_duplicates_refused(identity: Identity) -> None:
    _phone, admin = identity.admin("粤01")
    token = admin["access_token"]
    before = _accounts(identity)
    for bad in (_staff_body(roles=[]), _staff_body(roles=["party"]),
                _staff_body(roles=["judge", "judge"]), _staff_body(phone="123"),
                _staff_body(password="short"), _staff_body(department="")):
        resp = identity.call("POST", "/staff", json=bad, token=token)
        assert resp.status_code == 422, bad
        assert resp.get_json()["errors"]["json"]
    member = identity.add_staff(token)
    dup = identity.call("POST", "/staff", json=_staff_body(phone=member["phone"]), token=token)
    assert dup.status_code == 409 and dup.get_json()["errors"] == {
        "phone": ["already registered"]}
    assert _accounts(identity) == before + 1


def test_the_staff_list_is_the_admins_own_court_with_phones_masked(identity: Identity) -> None:
    _p1, admin1 = identity.admin("粤01")
    _p2, admin2 = identity.admin("粤02")
    judge = identity.add_staff(admin1["access_token"], roles=["judge"], department="民一庭")
    identity.add_staff(admin1["access_token"], roles=["clerk"], department="立案庭")
    identity.add_staff(admin2["access_token"], roles=["judge"])
    resp = identity.call("GET", "/staff", token=admin1["access_token"])
    assert resp.status_code == 200
    items = resp.get_json()["items"]
    assert {i["court"] for i in items} == {"粤01"}
    assert len(items) == 3  # the administrator, the judge, the clerk
    assert judge["phone"] not in resp.get_data(as_text=True)
    assert all("****" in i["phone_masked"] for i in items)
    judges = identity.call("GET", "/staff?role=judge",
                           token=admin1["access_token"]).get_json()["items"]
    assert [j["id"] for j in judges] == [judge["id"]]
    person, _ = identity.register()
    party = identity.tokens(person["phone"])["access_token"]
    assert identity.call("GET", "/staff", token=party).status_code == 403
    assert identity.call("GET", "/staff").status_code == 401


def test_internal_staff_query_needs_the_service_secret_and_filters(identity: Identity) -> None:
    _p, admin = identity.admin("粤01")
    _p2, admin2 = identity.admin("粤02")
    head = identity.add_staff(admin["access_token"], name="赵庭长",
                              roles=["judge", "division_head"], department="民一庭")
    identity.add_staff(admin["access_token"], name="钱庭长", roles=["division_head"],
                       department="民二庭")
    president = identity.add_staff(admin["access_token"], name="孙院长", roles=["president"],
                                   department=None)
    identity.add_staff(admin2["access_token"], roles=["division_head"], department="民一庭")

    path = "/internal/staff?court=粤01&role=division_head&department=民一庭"
    assert identity.call("GET", path).status_code == 403
    assert identity.call("GET", path, headers={SERVICE_TOKEN_HEADER: "wrong"}).status_code == 403
    token = identity.tokens(head["phone"])["access_token"]
    assert identity.call("GET", path, token=token).status_code == 403
    resp = identity.internal(path)
    assert resp.status_code == 200
    assert resp.get_json() == {"items": [{"account_id": head["id"], "name": "赵庭长",
                                          "roles": ["judge", "division_head"],
                                          "department": "民一庭"}]}
    heads = identity.internal("/internal/staff?court=粤01&role=division_head").get_json()
    assert {i["name"] for i in heads["items"]} == {"赵庭长", "钱庭长"}
    presidents = identity.internal("/internal/staff?court=粤01&role=president").get_json()
    assert [i["account_id"] for i in presidents["items"]] == [president["id"]]
    assert "phone" not in json.dumps(heads)
    assert identity.internal("/internal/staff?role=judge").status_code == 422
    assert identity.internal("/internal/staff?court=粤01&role=nobody").status_code == 422


def test_disabling_staff_stops_login_and_refresh_at_once(identity: Identity) -> None:
    _p, admin = identity.admin("粤01")
    member = identity.add_staff(admin["access_token"], roles=["judge"])
    tokens = identity.tokens(member["phone"])
    resp = identity.call("POST", f"/staff/{member['id']}/disable", token=admin["access_token"])
    assert resp.status_code == 200 and resp.get_json()["status"] == "disabled"
    refresh = identity.call("POST", "/tokens/refresh",
                            json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code in (401, 403)
    login = identity.login(member["phone"])
    assert login.status_code == 403 and login.get_json()["type"].endswith("/account-disabled")
    assert identity.login(member["phone"], "wrong-password").status_code == 401
    gone = identity.internal("/internal/staff?court=粤01&role=judge").get_json()["items"]
    assert member["id"] not in [i["account_id"] for i in gone]
    # enabled again: a new sign-in works; the old refresh token stays dead
    assert identity.call("POST", f"/staff/{member['id']}/enable",
                         token=admin["access_token"]).get_json()["status"] == "active"
    assert identity.login(member["phone"]).status_code == 201
    assert identity.call("POST", "/tokens/refresh", json={
        "refresh_token": tokens["refresh_token"]}).status_code == 401


def test_disabling_is_for_the_admins_own_court_only(identity: Identity) -> None:
    phone1, admin1 = identity.admin("粤01")
    _p2, admin2 = identity.admin("粤02")
    member = identity.add_staff(admin1["access_token"])
    other = identity.call("POST", f"/staff/{member['id']}/disable", token=admin2["access_token"])
    assert other.status_code == 404
    person, account = identity.register()
    assert identity.call("POST", f"/staff/{account['id']}/disable",
                         token=admin1["access_token"]).status_code == 404
    party = identity.tokens(person["phone"])["access_token"]
    assert identity.call("POST", f"/staff/{member['id']}/disable",
                         token=party).status_code == 403
    me = identity.call("GET", "/accounts/me", token=admin1["access_token"]).get_json()
    own = identity.call("POST", f"/staff/{me['id']}/disable", token=admin1["access_token"])
    assert own.status_code == 409
    assert identity.login(member["phone"]).status_code == 201
    assert identity.login(phone1).status_code == 201


def test_another_courts_staff_account_is_a_404_and_a_recorded_denial(identity: Identity) -> None:
    """The 404 hides the account, the audit trail still names it (failed before: the web
    layer records a 404 only for an object the use case named)."""
    _p1, admin1 = identity.admin("粤01")
    _p2, admin2 = identity.admin("粤02")
    member = identity.add_staff(admin1["access_token"])
    me = identity.call("GET", "/accounts/me", token=admin2["access_token"]).get_json()
    refused = identity.call("POST", f"/staff/{member['id']}/disable",
                            token=admin2["access_token"])
    assert refused.status_code == 404
    assert identity.call("POST", "/staff/no-such-account/disable",
                         token=admin2["access_token"]).status_code == 404
    with identity.rt.db.transaction() as s:
        denied = s.execute(select(audit_trail).where(
            audit_trail.c.outcome == "denied")).all()
    assert [(d.action, d.subject, d.actor) for d in denied] == [
        ("access.denied", f"account:{member['id']}", me["id"])]
    assert json.loads(denied[0].detail)["status"] == 404
