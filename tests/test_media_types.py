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


VERIFY = "/api/documents/verify"  # public; its body is multipart/form-data alone
DEEP = "[" * 100 + "]" * 100  # past the kit's 64 levels (``servicekit.web.MAX_JSON_DEPTH``)


@pytest.mark.parametrize(("url", "ctype", "sent", "accepted"), [
    (ACCOUNTS, "text/plain", DEEP, "application/json"),
    (ACCOUNTS, "text/plain", '{"name": "a\\u0000b"}', "application/json"),
    (ACCOUNTS, "application/x-www-form-urlencoded", "name=a%00b&phone=1", "application/json"),
    (VERIFY, "application/json", DEEP, "multipart/form-data"),
    (VERIFY, "application/json", '{"file": "a\\u0000b"}', "multipart/form-data"),
], ids=["deep-text", "nul-text", "nul-form-to-json", "deep-json-to-upload", "nul-json-to-upload"])
def test_the_type_is_judged_before_what_the_body_holds(
        http: Client, url: str, ctype: str, sent: str, accepted: str) -> None:
    """A body of a type the route does not take is the 415 naming the types it takes, not a
    400 (JSON too deep, or holding U+0000) or a 422 (a form field holding it) about its content:
    the JSON ones sent to an upload route, and the form sent to a JSON route, were."""
    resp = http.post(url, data=sent, content_type=ctype,
                     headers={"Idempotency-Key": str(uuid.uuid4())})
    assert problem_of(resp, 415, "unsupported-media-type")["accepted"] == [accepted]
    assert resp.headers["Accept-Post"] == accepted


def test_the_same_bytes_resent_under_a_used_key_as_another_type_are_a_415_not_a_replay(
        suite: Suite, http: Client) -> None:
    """The first answer was replayed to the same JSON bytes sent as text/plain under its key,
    a request the route does not take; told its type is wrong, the client corrects it and,
    under the same key, is given the first answer (one account)."""
    person = individual()
    raw, key = json.dumps(person), {"Idempotency-Key": str(uuid.uuid4())}
    first = http.post(ACCOUNTS, data=raw, content_type="application/json", headers=key)
    assert first.status_code == 201, first.get_data(as_text=True)
    resent = http.post(ACCOUNTS, data=raw, content_type="text/plain", headers=key)
    assert problem_of(resent, 415, "unsupported-media-type")["accepted"] == ["application/json"]
    assert "Idempotent-Replayed" not in resent.headers
    corrected = http.post(ACCOUNTS, data=raw, content_type="application/json", headers=key)
    assert corrected.status_code == 201 and corrected.headers["Idempotent-Replayed"] == "true"
    assert corrected.get_data() == first.get_data()
    assert _accounts_with(suite, person["id_number"]) == 1
