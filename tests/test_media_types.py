"""A body sent with a Content-Type its route does not take is a 415 problem through the gateway,
in both tiers, naming the type the route takes; nothing is created and the ``Idempotency-Key``
is free for the corrected request (``servicekit.media_types``). Before, webargs read no JSON
from a body not labelled JSON (curl's bare ``-d`` labels it a form), nor a form from a JSON
body, and the client was told every field was missing."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select
from werkzeug.test import Client

from ecourt.embedded import Suite
from servicekit.testing import problem_of
from services.identity.models import Account
from services.matters.models import Binding
from tests.factories import individual
from tests.harness import bearer, online_lawyer

ACCOUNTS = "/api/identity/accounts"


def _accounts_with(suite: Suite, id_number: str) -> int:
    with suite.runtimes["identity"].db.transaction() as s:
        return s.scalar(select(func.count()).select_from(Account)
                        .where(Account.id_number == id_number)) or 0


def _bindings(suite: Suite) -> int:
    with suite.runtimes["matters"].db.transaction() as s:
        return s.scalar(select(func.count()).select_from(Binding)) or 0


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_json_body_of_another_type_is_a_415_and_the_key_is_free(
        suite: Suite, http: Client, ctype: str) -> None:
    person = individual()
    key = str(uuid.uuid4())
    resp = http.post(ACCOUNTS, data=json.dumps(person), content_type=ctype,
                     headers={"Idempotency-Key": key})
    body = problem_of(resp, 415, "unsupported-media-type")
    assert body["accepted"] == ["application/json"]
    assert ctype in body["detail"] and "Content-Type: application/json" in body["detail"]
    assert body["instance"] == ACCOUNTS
    assert resp.headers["Accept-Post"] == "application/json"
    assert _accounts_with(suite, person["id_number"]) == 0
    # the corrected request, with the same key, registers
    resp = http.post(ACCOUNTS, data=json.dumps(person),
                     content_type="application/json; charset=utf-8",
                     headers={"Idempotency-Key": key})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert _accounts_with(suite, person["id_number"]) == 1


def test_a_json_body_sent_to_an_upload_route_is_a_415_naming_multipart(
        suite: Suite, http: Client) -> None:
    """matters' binding request is multipart (the letter and two text fields): JSON was
    "letter: Missing data"."""
    _, lawyer = online_lawyer(suite, http)
    before, key = _bindings(suite), str(uuid.uuid4())
    resp = http.post("/api/matters/bindings", json={"case_number": "(2021)粤02民初1号",
                                                    "party_name": "周俊雄", "letter": "x"},
                     headers={**bearer(lawyer), "Idempotency-Key": key})
    body = problem_of(resp, 415, "unsupported-media-type")
    assert body["accepted"] == ["multipart/form-data"]
    assert resp.headers["Accept-Post"] == "multipart/form-data"
    assert _bindings(suite) == before
    # the public verification upload too
    resp = http.post("/api/documents/verify", json={"file": "x"})
    assert problem_of(resp, 415, "unsupported-media-type")["accepted"] == [
        "multipart/form-data"]
