"""Registering an individual: validation answers 422 with field errors and writes nothing; a
duplicate is a 409 naming the field, and 5 of them from one client address in 15 minutes make
its next registrations a 429; the response shows ID number and phone masked."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from servicekit.tables import idempotency_keys, outbox
from services.identity.models import Account, LoginFailure
from services.identity.tests.conftest import Identity
from services.identity.usecases import accounts
from tests.factories import individual


def _counts(identity: Identity) -> tuple[int, int]:
    with identity.rt.db.transaction() as s:
        return (s.scalar(select(func.count()).select_from(Account)) or 0,
                s.scalar(select(func.count()).select_from(outbox)) or 0)


@pytest.mark.parametrize(("field", "value"), [
    ("id_number", "110105194912310021"),  # wrong GB 11643 check character
    ("id_number", "11010519491231"),
    ("phone", "12800138000"),
    ("phone", "1380013800"),
    ("phone", "13800138000\n"),  # "$" matched before the newline: 12 characters got in
    ("id_number", "\uff14\uff14\uff10\uff11\uff10\uff16\uff11\uff19\uff19\uff10"
                  "\uff10\uff11\uff10\uff11\uff10\uff10\uff11" "3"),  # full-width digits
    ("id_number", "\u00b9" * 17 + "X"),  # superscript ones: int() raised, a 500
    ("password", "short"),
    ("name", ""),
])
def test_invalid_input_is_refused_with_field_errors_and_changes_nothing(
        identity: Identity, field: str, value: str) -> None:
    before = _counts(identity)
    resp = identity.call("POST", "/accounts", json=individual(**{field: value}))
    assert resp.status_code == 422
    assert resp.content_type == "application/problem+json"
    body = resp.get_json()
    assert body["type"].endswith("/validation-error")
    assert field in body["errors"]["json"]
    assert _counts(identity) == before


def test_missing_fields_are_named(identity: Identity) -> None:
    resp = identity.call("POST", "/accounts", json={"name": "张三"})
    assert resp.status_code == 422
    assert set(resp.get_json()["errors"]["json"]) == {"id_number", "phone", "password"}
    assert _counts(identity) == (0, 0)


def test_registration_masks_and_emits_one_event_without_contact_details(
        identity: Identity) -> None:
    person, body = identity.register()
    assert body["kind"] == "individual" and body["roles"] == ["party"]
    assert body["id_number_masked"] == person["id_number"][:3] + "*" * 11 + person[
        "id_number"][-4:]
    assert body["phone_masked"] == person["phone"][:3] + "****" + person["phone"][-4:]
    assert body["court"] is None and body["status"] == "active"
    with identity.rt.db.transaction() as s:
        [event] = s.scalars(select(outbox.c.body)).all()
    assert person["phone"] not in event and person["id_number"] not in event
    assert json.loads(event)["data"]["kind"] == "individual"


@pytest.mark.parametrize("field", ["phone", "id_number"])
def test_duplicate_is_a_409_naming_the_field_and_changes_nothing(
        identity: Identity, field: str) -> None:
    first, _ = identity.register()
    before = _counts(identity)
    again = individual(**{field: first[field]})
    resp = identity.call("POST", "/accounts", json=again)
    assert resp.status_code == 409
    body = resp.get_json()
    assert body["type"].endswith("/account-exists")
    assert body["errors"] == {field: ["already registered"]}
    assert _counts(identity) == before


def test_a_registered_phone_with_a_newline_is_not_a_new_account(identity: Identity) -> None:
    """It slipped past the duplicate check: a second account for the same mobile on SQLite,
    12 characters in String(11) (a 500) on PostgreSQL (RELIABILITY S7)."""
    first, _ = identity.register()
    before = _counts(identity)
    resp = identity.call("POST", "/accounts", json=individual(phone=first["phone"] + "\n"))
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert "phone" in resp.get_json()["errors"]["json"]
    assert _counts(identity) == before


def test_lowercase_x_in_an_id_number_is_the_same_person(identity: Identity) -> None:
    person, _ = identity.register(id_number="11010519491231002X")
    resp = identity.call("POST", "/accounts",
                         json=individual(id_number="11010519491231002x"))
    assert resp.status_code == 409
    assert identity.login("11010519491231002x").status_code == 201
    assert person["id_number"] == "11010519491231002X"


def test_idempotent_registration_replays_the_first_answer(identity: Identity) -> None:
    person = individual()
    headers = {"Idempotency-Key": "reg-1"}
    first = identity.call("POST", "/accounts", json=person, headers=headers)
    second = identity.call("POST", "/accounts", json=person, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert _counts(identity) == (1, 1)
    with identity.rt.db.transaction() as s:
        stored = s.scalars(select(idempotency_keys.c.body)).one()
    assert person["phone"].encode() not in stored and person["id_number"].encode() not in stored


def _refusals_counted(identity: Identity) -> int:
    with identity.rt.db.transaction(reads_only=True) as s:
        return s.scalar(select(func.count()).select_from(LoginFailure)) or 0


def test_a_refused_registration_is_replayed_under_its_key_and_counted_once(
        identity: Identity) -> None:
    """A 409 for a taken number counts against the client's address (a change committed), so
    it is its key's answer: a client retrying after a timeout is told the same thing and is
    not counted twice; a new key runs (and counts) again, so keys are no way around the
    count; another body under the key is a reused key, not a new look-up."""
    taken, _ = identity.register()
    person = individual(id_number=taken["id_number"])
    headers = {"Idempotency-Key": "reg-refused"}
    first = identity.call("POST", "/accounts", json=person, headers=headers)
    assert first.status_code == 409 and _refusals_counted(identity) == 1
    retry = identity.call("POST", "/accounts", json=person, headers=headers)
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert (retry.status_code, retry.data) == (409, first.data)
    assert _refusals_counted(identity) == 1
    other = identity.call("POST", "/accounts", json=individual(phone=taken["phone"]),
                          headers=headers)
    assert other.status_code == 422 and other.get_json()["type"].endswith(
        "/idempotency-key-reused")
    assert _refusals_counted(identity) == 1
    fresh = identity.call("POST", "/accounts", json=person,
                          headers={"Idempotency-Key": "reg-refused-2"})
    assert fresh.status_code == 409 and "Idempotent-Replayed" not in fresh.headers
    assert _refusals_counted(identity) == 2


# --- refusals of taken numbers are throttled per client address (RELIABILITY S3, S6) -------

def _register(identity: Identity, ip: str, **overrides: str) -> Any:
    return identity.call("POST", "/accounts", json=individual(**overrides), ip=ip)


def _refused(identity: Identity, taken: dict[str, str], times: int, ip: str) -> None:
    """``times`` registrations of ``taken``'s phone or ID number (in turn) from ``ip``."""
    for i in range(times):
        field = ("phone", "id_number")[i % 2]
        resp = _register(identity, ip, **{field: taken[field]})
        assert resp.status_code == 409, resp.get_data(as_text=True)


def _assert_throttled(resp: Any) -> None:
    assert resp.status_code == 429, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    assert resp.get_json()["type"].endswith("/too-many-attempts")
    assert 0 < int(resp.headers["Retry-After"]) <= 900


def test_five_refusals_of_taken_numbers_throttle_the_address_until_the_window_passes(
        identity: Identity) -> None:
    """A 409 tells whether a phone or ID number is registered, and anyone could ask without
    limit. Now the sixth registration from an address after 5 such refusals is a 429, a free
    number's too, and writes nothing; another address is not affected."""
    taken, _ = identity.register()
    _refused(identity, taken, 5, ip="203.0.113.7")
    before = _counts(identity)
    _assert_throttled(_register(identity, "203.0.113.7", phone=taken["phone"]))
    _assert_throttled(_register(identity, "203.0.113.7"))
    assert _counts(identity) == before
    assert _register(identity, "203.0.113.8").status_code == 201
    with identity.rt.db.transaction() as s:  # the window (15 minutes) passes
        for row in s.scalars(select(LoginFailure)):
            row.failed_at -= timedelta(minutes=16)
    assert _register(identity, "203.0.113.7").status_code == 201


class _CountingHasher(PasswordHasher):
    """The registration's argon2 hasher, counting its hashes."""

    def __init__(self) -> None:
        super().__init__()
        self.hashes = 0

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.hashes += 1
        return super().hash(password, salt=salt)


def test_a_throttled_registration_costs_no_password_hash(
        identity: Identity, monkeypatch: pytest.MonkeyPatch) -> None:
    """The password was hashed (argon2: slow on purpose) before the transaction that found
    the address over its limit: every 429 still cost a hash. Now a read-only look at the
    counter refuses first."""
    taken, _ = identity.register()
    _refused(identity, taken, 5, ip="203.0.113.11")
    hasher = _CountingHasher()
    monkeypatch.setattr(accounts, "hasher", hasher)
    _assert_throttled(_register(identity, "203.0.113.11"))
    _assert_throttled(_register(identity, "203.0.113.11", phone=taken["phone"]))
    assert hasher.hashes == 0
    assert _register(identity, "203.0.113.12").status_code == 201  # another address: hashed
    assert hasher.hashes == 1


def test_successful_registrations_do_not_count(identity: Identity) -> None:
    for _ in range(6):
        assert _register(identity, "203.0.113.9").status_code == 201
    taken, _ = identity.register()
    _refused(identity, taken, 5, ip="203.0.113.9")
    _assert_throttled(_register(identity, "203.0.113.9"))


def test_the_address_is_the_one_the_gateway_forwards(identity: Identity) -> None:
    """Behind the gateway every request comes from its address: the client is the right-most
    X-Forwarded-For hop, which the gateway appended (a client can forge those to its left)."""
    identity.rt.extras["trust_forwarded"] = True
    taken, _ = identity.register()
    for i in range(5):
        resp = identity.call("POST", "/accounts", ip="10.0.0.2",
                             json=individual(phone=taken["phone"]),
                             headers={"X-Forwarded-For": f"192.0.2.{i}, 198.51.100.4"})
        assert resp.status_code == 409
    forged = identity.call("POST", "/accounts", ip="10.0.0.2", json=individual(),
                           headers={"X-Forwarded-For": "192.0.2.99, 198.51.100.4"})
    _assert_throttled(forged)
    other = identity.call("POST", "/accounts", ip="10.0.0.2", json=individual(),
                          headers={"X-Forwarded-For": "198.51.100.5"})
    assert other.status_code == 201, other.get_data(as_text=True)


def test_a_parallel_burst_of_taken_numbers_gets_no_more_than_five_answers(
        identity: Identity) -> None:
    taken, _ = identity.register()

    def ask(_: int) -> int:
        return _register(identity, "203.0.113.10", phone=taken["phone"]).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(ask, range(12)))
    assert codes.count(409) == 5 and codes.count(429) == 7
