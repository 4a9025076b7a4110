"""RELIABILITY S1/S2/S5 on every route of identity, walked from ``app.url_map`` (a new route is
covered the day it is added): no token, an expired or a tampered token → 401 on every
protected route; a party who does not own the object, and staff of another court, never get
2xx on someone else's object or 5xx anywhere; internal routes answer no one without the
service secret; and the public routes are exactly the ones meant to be public."""

from __future__ import annotations

import io

import pytest

from servicekit.access import Access
from services.identity.tests.conftest import Identity
from tests.route_walk import routes, tampered, url_of

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 128
PUBLIC = {
    ("POST", "/accounts"), ("POST", "/tokens"), ("POST", "/tokens/refresh"),
    ("POST", "/tokens/revoke"), ("POST", "/tokens/sms"), ("GET", "/.well-known/jwks.json"),
    ("POST", "/captchas"), ("POST", "/sms-codes"), ("POST", "/password-resets"),
    ("POST", "/qr-tickets"), ("GET", "/qr-tickets/<ticket>"),
}
#: routes where any signed-in account acts on its own things (checked by their own tests)
OWN = {("GET", "/accounts/me"), ("POST", "/accounts/me/phone-change"),
       ("POST", "/accounts/me/phone-change/confirm"), ("GET", "/organizations/mine"),
       ("GET", "/lawyer-verifications/mine"), ("POST", "/organizations"),
       ("POST", "/lawyer-verifications"), ("POST", "/qr-tickets/<ticket>/confirm")}
CALLERS = ("no token", "expired", "tampered", "another party", "staff of another court")


def _routes(identity: Identity) -> list[tuple[str, str, Access]]:
    return [(route.method, route.rule, route.access) for route in routes(identity.app)]


def _objects(identity: Identity) -> dict[str, str]:
    """Real objects of court 粤01: a staff member, an organization, a lawyer application."""
    _, admin = identity.admin("粤01")
    member = identity.add_staff(admin["access_token"])
    owner, _ = identity.register(name="李四")
    token = identity.tokens(owner["phone"], owner["password"])["access_token"]
    org = identity.call("POST", "/organizations", token=token, data={
        "name": "示例有限公司", "uscc": "91440101MA59ABCD1X", "legal_representative": "李四",
        "court": "粤01", "password": "org-password-1",
        "licence": (io.BytesIO(PNG), "l.png", "image/png")}).get_json()
    lawyer = identity.call("POST", "/lawyer-verifications", token=token, data={
        "method": "offline", "court": "粤01", "license_no": "11101201510000003",
        "law_firm": "北京虚构律师事务所",
        "certificate": (io.BytesIO(PNG), "c.png", "image/png"),
        "id_card": (io.BytesIO(PNG), "i.png", "image/png")}).get_json()
    return {"account_id": member["id"], "org_id": org["id"],
            "verification_id": lawyer["id"], "which": "certificate",
            "ticket": "t" * 43}


def _headers(identity: Identity, caller: str) -> dict[str, str]:
    key = identity.rt.extras["signing_key"]
    if caller == "no token":
        return {}
    if caller == "expired":
        token = key.sign({"sub": "x", "roles": ["court_admin"], "court": "粤01"}, ttl=-120)
    elif caller == "tampered":
        token = tampered(key.sign({"sub": "x", "roles": ["party"]}))
    elif caller == "another party":
        person, _ = identity.register()
        token = identity.tokens(person["phone"], person["password"])["access_token"]
    else:
        _, admin = identity.admin("粤02")
        reviewer = identity.add_staff(admin["access_token"],
                                      roles=["registry_reviewer", "court_admin"])
        token = identity.tokens(reviewer["phone"])["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_the_public_routes_are_exactly_the_intended_ones(identity: Identity) -> None:
    public = {(m, r) for m, r, a in _routes(identity) if a is not None and a.kind == "public"}
    assert public == PUBLIC


@pytest.mark.parametrize("caller", CALLERS)
def test_every_protected_route_refuses_outsiders(identity: Identity, caller: str) -> None:
    ids = _objects(identity)
    headers = _headers(identity, caller)
    leaks = []
    for method, rule, access in _routes(identity):
        if (method, rule) in PUBLIC or (caller not in ("no token", "expired", "tampered")
                                        and (method, rule) in OWN):
            continue
        url = url_of(rule, ids)
        body = {"reason": "x"} if rule.endswith("/reject") else (
            {"name": "甲", "phone": "13900000000", "password": "password-123",
             "court": "粤01", "department": "d", "roles": ["judge"]} if rule == "/staff" else {})
        resp = identity.call(method, url, headers=headers,
                             json=body if method == "POST" else None)
        status = resp.status_code
        if access.kind == "internal":  # a bad token is refused first (401), any other: 403
            ok = status == 403 or (status == 401 and caller in ("expired", "tampered"))
        elif caller in ("no token", "expired", "tampered"):
            ok = status == 401
        elif method == "GET" and rule in ("/staff", "/organizations/reviews",
                                          "/lawyer-verifications/reviews"):
            ok = status in (200, 403) and not any(
                v in resp.get_data(as_text=True) for v in ids.values())
        else:
            ok = status in (403, 404)
        if not ok:
            leaks.append((method, rule, status))
    assert leaks == [], leaks
