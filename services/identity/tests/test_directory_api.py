"""``GET /internal/accounts``: what matters learns of the accounts a case names — kind, name,
status, and a staff member's court and roles, nothing else; services only; bad queries are a
422 problem."""

from __future__ import annotations

import uuid

from services.identity.tests.conftest import Identity


def test_the_accounts_asked_for_that_exist_and_nothing_personal(identity: Identity) -> None:
    person, account = identity.register()
    missing = str(uuid.uuid4())
    found = identity.internal(f"/internal/accounts?id={account['id']}&id={missing}")
    assert found.status_code == 200, found.get_json()
    [item] = found.get_json()["items"]
    assert item == {"account_id": account["id"], "kind": "individual", "name": person["name"],
                    "status": "active", "court": None, "roles": ["party"]}  # no phone, no ID
    assert person["phone"] not in found.get_data(as_text=True)


def test_a_staff_member_comes_with_court_and_roles(identity: Identity) -> None:
    """The case's judge and clerk are checked in the same ask as its parties."""
    _, admin = identity.admin(court="粤01")
    judge = identity.add_staff(admin["access_token"], roles=["judge", "division_head"])
    found = identity.internal(f"/internal/accounts?id={judge['id']}")
    assert found.status_code == 200, found.get_json()
    [item] = found.get_json()["items"]
    assert item == {"account_id": judge["id"], "kind": "staff", "name": judge["name"],
                    "status": "active", "court": "粤01", "roles": ["judge", "division_head"]}
    assert judge["phone"] not in found.get_data(as_text=True)


def test_a_bad_query_is_a_422_and_a_caller_without_the_service_secret_is_refused(
        identity: Identity) -> None:
    for query in ("", "?id=", "?" + "&".join(f"id={uuid.uuid4()}" for _ in range(51))):
        resp = identity.internal(f"/internal/accounts{query}")
        assert resp.status_code == 422, (query, resp.get_json())
        assert resp.content_type.startswith("application/problem+json")
    stranger = identity.client.get(f"/internal/accounts?id={uuid.uuid4()}")
    assert stranger.status_code in (401, 403)
