"""Sign-in: tokens and their claims, refresh rotation, reuse detection, sign-out."""

from __future__ import annotations

from sqlalchemy import func, select

from servicekit.tables import idempotency_keys
from servicekit.tokens import SigningKey, TokenVerifier
from services.identity.models import RefreshToken
from services.identity.tests.conftest import PASSWORD, Identity


def _verifier_from_jwks(identity: Identity) -> TokenVerifier:
    jwks = identity.call("GET", "/.well-known/jwks.json").get_json()
    return TokenVerifier(lambda: jwks)


def test_login_by_phone_and_by_id_number(identity: Identity) -> None:
    person, account = identity.register()
    for username in (person["phone"], person["id_number"], f" {person['phone']} "):
        resp = identity.login(username)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        body = resp.get_json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 900
        assert len(body["refresh_token"]) >= 43
        assert resp.headers["Cache-Control"] == "no-store"
        claims = _verifier_from_jwks(identity).verify(body["access_token"])
        assert claims["sub"] == account["id"]
        assert claims["roles"] == ["party"] and claims["kind"] == "individual"
        assert claims["exp"] - claims["iat"] == 900
        assert "court" not in claims


def test_wrong_password_and_unknown_user_look_the_same(identity: Identity) -> None:
    person, _ = identity.register()
    wrong = identity.login(person["phone"], "not-the-password")
    unknown = identity.login("13999999999", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json()["type"] == unknown.get_json()["type"]
    assert wrong.get_json()["detail"] == unknown.get_json()["detail"]


def test_staff_tokens_carry_court_department_and_roles(identity: Identity) -> None:
    _phone, admin = identity.admin("粤01")
    member = identity.add_staff(admin["access_token"], roles=["judge", "division_head"],
                                department="民一庭")
    tokens = identity.tokens(member["phone"])
    claims = _verifier_from_jwks(identity).verify(tokens["access_token"])
    assert claims["kind"] == "staff" and claims["court"] == "粤01"
    assert claims["department"] == "民一庭"
    assert claims["roles"] == ["judge", "division_head"]
    admin_claims = _verifier_from_jwks(identity).verify(admin["access_token"])
    assert admin_claims["roles"] == ["court_admin"] and admin_claims["court"] == "粤01"


def test_me_shows_the_account_masked(identity: Identity) -> None:
    person, account = identity.register()
    token = identity.tokens(person["phone"])["access_token"]
    resp = identity.call("GET", "/accounts/me", token=token)
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    assert person["phone"] not in text and person["id_number"] not in text
    body = resp.get_json()
    assert body["id"] == account["id"]
    assert body["phone_masked"] == person["phone"][:3] + "****" + person["phone"][-4:]
    assert body["id_number_masked"].startswith(person["id_number"][:3])
    assert identity.call("GET", "/accounts/me").status_code == 401


def test_a_token_signed_by_another_key_is_refused(identity: Identity) -> None:
    person, account = identity.register()
    forged = SigningKey.generate().sign({"sub": account["id"], "roles": ["court_admin"],
                                         "kind": "staff", "court": "粤01"})
    assert identity.call("GET", "/accounts/me", token=forged).status_code == 401
    assert identity.call("GET", "/staff", token=forged).status_code == 401


def test_refresh_rotates_and_the_old_token_stops_working(identity: Identity) -> None:
    person, account = identity.register()
    first = identity.tokens(person["phone"])
    resp = identity.call("POST", "/tokens/refresh",
                         json={"refresh_token": first["refresh_token"]})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    second = resp.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert resp.headers["Cache-Control"] == "no-store"
    claims = _verifier_from_jwks(identity).verify(second["access_token"])
    assert claims["sub"] == account["id"]
    old_claims = _verifier_from_jwks(identity).verify(first["access_token"])
    assert claims["sid"] == old_claims["sid"]  # the same sign-in
    third = identity.call("POST", "/tokens/refresh",
                          json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 201


def test_reusing_a_rotated_token_revokes_the_whole_family(identity: Identity) -> None:
    person, _ = identity.register()
    first = identity.tokens(person["phone"])
    other_session = identity.tokens(person["phone"])
    second = identity.call("POST", "/tokens/refresh",
                           json={"refresh_token": first["refresh_token"]}).get_json()
    third = identity.call("POST", "/tokens/refresh",
                          json={"refresh_token": second["refresh_token"]}).get_json()
    # an attacker replays the first (already rotated) token
    replay = identity.call("POST", "/tokens/refresh",
                           json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert replay.get_json()["type"].endswith("/refresh-token-reused")
    # every descendant is dead too, the newest included
    for token in (second["refresh_token"], third["refresh_token"]):
        resp = identity.call("POST", "/tokens/refresh", json={"refresh_token": token})
        assert resp.status_code == 401
    # another sign-in of the same account is untouched
    ok = identity.call("POST", "/tokens/refresh",
                       json={"refresh_token": other_session["refresh_token"]})
    assert ok.status_code == 201
    with identity.rt.db.transaction() as s:
        reasons = set(s.scalars(select(RefreshToken.revoked_reason)).all())
    assert "reuse" in reasons


def test_sign_out_ends_the_family(identity: Identity) -> None:
    person, _ = identity.register()
    first = identity.tokens(person["phone"])
    second = identity.call("POST", "/tokens/refresh",
                           json={"refresh_token": first["refresh_token"]}).get_json()
    out = identity.call("POST", "/tokens/revoke", json={"refresh_token": second["refresh_token"]})
    assert out.status_code == 204
    resp = identity.call("POST", "/tokens/refresh", json={"refresh_token": second["refresh_token"]})
    assert resp.status_code == 401
    # signing out again, or with a token nobody knows, is not an error (RFC 7009)
    assert identity.call("POST", "/tokens/revoke",
                         json={"refresh_token": second["refresh_token"]}).status_code == 204
    assert identity.call("POST", "/tokens/revoke",
                         json={"refresh_token": "nonsense"}).status_code == 204


def test_unknown_and_missing_refresh_tokens(identity: Identity) -> None:
    resp = identity.call("POST", "/tokens/refresh", json={"refresh_token": "nonsense"})
    assert resp.status_code == 401 and resp.content_type == "application/problem+json"
    assert identity.call("POST", "/tokens/refresh", json={}).status_code == 422


def test_refresh_tokens_are_stored_only_as_digests(identity: Identity) -> None:
    person, _ = identity.register()
    tokens = identity.tokens(person["phone"])
    with identity.rt.db.transaction() as s:
        rows = s.scalars(select(RefreshToken)).all()
    assert len(rows) == 1
    assert tokens["refresh_token"] not in {r.token_hash for r in rows}
    assert (rows[0].expires_at - rows[0].issued_at).days == 14


def test_token_answers_are_not_kept_for_idempotent_replay(identity: Identity) -> None:
    person, _ = identity.register()
    headers = {"Idempotency-Key": "login-1"}
    body = {"username": person["phone"], "password": PASSWORD}
    first = identity.call("POST", "/tokens", json=body, headers=headers)
    second = identity.call("POST", "/tokens", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second.headers
    with identity.rt.db.transaction() as s:
        stored = s.scalar(select(func.count()).select_from(idempotency_keys).where(
            idempotency_keys.c.key == "login-1"))
    assert stored == 0
