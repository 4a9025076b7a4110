"""A JSON body with U+0000 in a string is a 400 problem in both tiers, and changes nothing
(RELIABILITY S7): PostgreSQL text cannot hold the character, and registering an account named
``"a\\u0000b"`` was a 500 there (psycopg's DataError), while SQLite stored it."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select
from werkzeug.test import Client

from ecourt.embedded import Suite
from services.identity.models import Account
from tests.factories import individual

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
