"""Registering an individual: validation answers 422 with field errors and writes nothing; a
duplicate is a 409 naming the field; the response shows ID number and phone masked."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from servicekit.tables import idempotency_keys, outbox
from services.identity.models import Account
from services.identity.tests.conftest import Identity
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
