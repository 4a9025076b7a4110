"""A JSON body with U+0000 in a string is a 400 problem in both tiers, and changes nothing
(RELIABILITY S7): PostgreSQL text cannot hold the character, and registering an account named
``"a\\u0000b"`` was a 500 there (psycopg's DataError), while SQLite stored it. A form field
with it is a 422 naming the field, in every service (identity's form schemas refused it before
the kit did)."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select
from werkzeug.test import Client

from ecourt.embedded import Suite
from servicekit.testing import wait_for
from services.identity.models import Account
from services.matters.models import Binding
from tests.factories import individual
from tests.harness import PDF, Court, bearer, file, matters_knows_lawyer, online_lawyer, person

ACCOUNTS = "/api/identity/accounts"


def _accounts_with(suite: Suite, id_number: str) -> int:
    with suite.runtimes["identity"].db.transaction() as s:
        return s.scalar(select(func.count()).select_from(Account)
                        .where(Account.id_number == id_number)) or 0


def _refused(resp) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    body = resp.get_json()
    assert body["type"].endswith("/invalid-character")
    assert "U+0000" in body["detail"]


@pytest.mark.parametrize("shape", ["value", "nested value", "key"])
def test_a_nul_in_a_json_string_is_a_400_and_creates_nothing(suite: Suite, shape: str) -> None:
    http = Client(suite.gateway)
    person = individual()
    if shape == "value":
        body = dict(person, name="a\u0000b")
    elif shape == "nested value":
        body = dict(person, extra={"deeper": [1, {"text": "x\u0000"}]})
    else:
        body = dict(person, **{"bad\u0000key": "x"})
    key = str(uuid.uuid4())
    _refused(http.post(ACCOUNTS, json=body, headers={"Idempotency-Key": key}))
    assert _accounts_with(suite, person["id_number"]) == 0
    # nothing kept, not even the Idempotency-Key: the same key with a clean body registers
    resp = http.post(ACCOUNTS, json=person, headers={"Idempotency-Key": key})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert _accounts_with(suite, person["id_number"]) == 1


def test_an_escaped_backslash_before_u0000_is_not_a_nul(embedded: Suite) -> None:
    """``"a\\\\u0000b"`` is a backslash and the letters u0000: a name like any other."""
    person = individual(name="a\\u0000b")
    raw = json.dumps(person)
    assert "\\\\u0000" in raw
    resp = Client(embedded.gateway).post(ACCOUNTS, data=raw,
                                          content_type="application/json")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.get_json()["name"] == "a\\u0000b"


def test_a_nul_in_a_utf16_body_is_refused_too(embedded: Suite) -> None:
    """JSON may come in UTF-16 (the parser detects it): no ``\\u0000`` bytes to look for."""
    person = individual(name="a\u0000b")
    resp = Client(embedded.gateway).post(ACCOUNTS, data=json.dumps(person).encode("utf-16"),
                                          content_type="application/json")
    _refused(resp)
    assert _accounts_with(embedded, person["id_number"]) == 0


@pytest.mark.parametrize("url", ["/api/documents/verify/AB%00CD",
                                 "/api/documents/verify?code=AB%00CD",
                                 "/api/identity/healthz?x=%00"])
def test_a_nul_in_the_path_or_the_query_is_a_400(suite: Suite, url: str) -> None:
    """A path parameter or a query value reaches the database as text like a body's."""
    _refused_where(Client(suite.gateway).get(url), "path or query")


def _refused_where(resp, where: str) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    assert resp.get_json()["type"].endswith("/invalid-character")
    assert where in resp.get_json()["detail"]


def _bindings(suite: Suite) -> int:
    with suite.runtimes["matters"].db.transaction() as s:
        return s.scalar(select(func.count()).select_from(Binding)) or 0


@pytest.fixture(scope="module")
def binding(suite: Suite) -> tuple[Client, str, str]:
    """A verified lawyer whom matters knows, and a case with a party for each test."""
    http = Client(suite.gateway)
    court = Court(suite, http, "粤02", "韶关市中级人民法院")
    party_id, _ = person(http, "周俊雄")
    case_id = court.case([("周俊雄", "plaintiff", party_id), ("黄添强", "defendant", None),
                          ("林小燕", "third_party", None)], effective="2021-07-01")
    case_number = http.get(f"/api/matters/cases/{case_id}",
                           headers=bearer(court.token("judge"))).get_json()["case_number"]
    lawyer_id, lawyer = online_lawyer(suite, http)
    wait_for(lambda: matters_knows_lawyer(suite, lawyer_id),
             message="matters to learn of the lawyer")
    return http, lawyer, case_number


def _bindings(suite: Suite) -> int:
    with suite.runtimes["matters"].db.transaction() as s:
        return s.scalar(select(func.count()).select_from(Binding)) or 0


@pytest.mark.parametrize(("field", "party"), [
    ("party_name", "周俊雄"), ("case_number", "黄添强"), ("note\u0000", "林小燕")])
def test_a_nul_in_a_form_field_is_a_422_naming_it_and_creates_nothing(
        suite: Suite, binding: tuple[Client, str, str], field: str, party: str) -> None:
    """matters' binding request (multipart: two text fields and the letter) has no form schema
    of its own that looks for U+0000: a party's name with it was "no such party" (404), a
    field named with it was taken as an unknown field and the binding made. The kit now looks
    at every form field's name and text, as identity's form schemas did for theirs alone."""
    http, lawyer, case_number = binding
    clean = {"case_number": case_number, "party_name": party}
    held = {field: "x"} if field not in clean else {field: clean[field] + "\u0000"}
    before, key = _bindings(suite), str(uuid.uuid4())
    resp = http.post("/api/matters/bindings", data={
        **clean, **held, "letter": file(PDF, "授权委托书.pdf", "application/pdf")},
        headers={**bearer(lawyer), "Idempotency-Key": key})
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    body = resp.get_json()
    assert list(body["errors"]["form"]) == [field]
    assert "U+0000" in body["detail"] and repr(field) in body["detail"]
    assert _bindings(suite) == before
    # nothing kept, not even the Idempotency-Key: the same key with clean fields asks
    resp = http.post("/api/matters/bindings", data={
        **clean, "letter": file(PDF, "授权委托书.pdf", "application/pdf")},
        headers={**bearer(lawyer), "Idempotency-Key": key})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert _bindings(suite) == before + 1


def test_a_nul_in_a_urlencoded_field_is_refused_too(binding: tuple[Client, str, str]) -> None:
    """No route takes a urlencoded form: its type is refused (415) before its fields are
    looked at (``servicekit.media_types``); it was this 422 naming the field."""
    http, lawyer, _ = binding
    resp = http.post("/api/matters/bindings", data="party_name=a%00b&case_number=1",
                     content_type="application/x-www-form-urlencoded", headers=bearer(lawyer))
    assert resp.status_code == 415, resp.get_data(as_text=True)
    assert resp.get_json()["accepted"] == ["multipart/form-data"]
