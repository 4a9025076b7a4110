"""JSON bodies that no view can take safely are refused by the kit before any view runs, with a
400 problem, and change nothing (RELIABILITY S7): a lone UTF-16
surrogate in a string (``"\\ud800"``: UTF-8 cannot encode it, so SQLite's and psycopg's
encoders and the answer's raised ``UnicodeEncodeError``, a 500), and arrays or objects nested
deeper than any route takes (``[`` 100,000 times: the parser's ``RecursionError``, a 500)."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select
from werkzeug.test import Client

from ecourt.embedded import Suite
from servicekit.web import MAX_JSON_DEPTH
from services.identity.models import Account
from tests.factories import individual
from tests.harness import bearer, person

ACCOUNTS = "/api/identity/accounts"


def _accounts_with(suite: Suite, id_number: str) -> int:
    with suite.runtimes["identity"].db.transaction() as s:
        return s.scalar(select(func.count()).select_from(Account)
                        .where(Account.id_number == id_number)) or 0


def _refused(resp, slug: str, words: str) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    body = resp.get_json()
    assert body["type"].endswith("/" + slug)
    assert words in body["detail"]


def _with_name(person: dict[str, str], json_text: str) -> str:
    """The person's JSON body with ``json_text`` (JSON source, escapes as written) as the name."""
    return json.dumps(dict(person, name="@NAME@")).replace('"@NAME@"', json_text)


@pytest.mark.parametrize("name", ['"\\ud800"', '"a\\uDC00b"', '"\\ud83d"',
                                  '"\\ude00\\ud83d"', '"x\\ud83d\\ude00\\ud83d"'])
def test_a_lone_surrogate_is_a_400_and_creates_nothing(suite: Suite, name: str) -> None:
    http = Client(suite.gateway)
    person = individual()
    key = str(uuid.uuid4())
    _refused(http.post(ACCOUNTS, data=_with_name(person, name), content_type="application/json",
                       headers={"Idempotency-Key": key}), "invalid-character", "surrogate")
    assert _accounts_with(suite, person["id_number"]) == 0
    # nothing kept, not even the Idempotency-Key: the same key with a clean body registers
    resp = http.post(ACCOUNTS, json=person, headers={"Idempotency-Key": key})
    assert resp.status_code == 201, resp.get_data(as_text=True)


@pytest.mark.parametrize("where", ["key", "nested value"])
def test_a_lone_surrogate_anywhere_in_the_body_is_refused(embedded: Suite, where: str) -> None:
    person = individual()
    raw = json.dumps(dict(person, extra={"@K@": [1, {"text": "@V@"}]}))
    raw = raw.replace("@K@" if where == "key" else "@V@", "\\udbff")
    _refused(Client(embedded.gateway).post(ACCOUNTS, data=raw, content_type="application/json"),
             "invalid-character", "surrogate")
    assert _accounts_with(embedded, person["id_number"]) == 0


def test_a_surrogate_spelled_in_the_bytes_is_refused(embedded: Suite) -> None:
    """U+D800 written in UTF-8's pattern (``ED A0 80``), which is not UTF-8: Python's JSON
    parser takes it from bytes (``surrogatepass``), so ``request.get_json`` would hand it on."""
    person = individual()
    raw = _with_name(person, '"@"').encode().replace(b"@", b"a\xed\xa0\x80")
    _refused(Client(embedded.gateway).post(ACCOUNTS, data=raw, content_type="application/json"),
             "invalid-character", "surrogate")
    assert _accounts_with(embedded, person["id_number"]) == 0


@pytest.mark.parametrize("name", ['"\\ud83d\\ude00张三"', '"\\uD83D\\uDE00"', '"张三😀"',
                                  '"\\\\ud800"', '"王\\u5c0f明"'])
def test_other_text_passes(suite: Suite, name: str) -> None:
    """A surrogate pair is one character (U+1F600), Chinese is Chinese, and an escaped
    backslash before ``ud800`` is the letters: all registered and answered as sent."""
    person = individual()
    raw = _with_name(person, name).encode()
    resp = Client(suite.gateway).post(ACCOUNTS, data=raw, content_type="application/json")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.get_json()["name"] == json.loads(name)


def _nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize("body", [
    "[" * 100_000, '{"a":' * 100_000, _nested(1000), _nested(MAX_JSON_DEPTH + 1),
    '{"name": "[[[", "extra": ' + _nested(MAX_JSON_DEPTH) + "}",
    _nested(MAX_JSON_DEPTH + 1).encode("utf-16")], ids=[
    "100,000 [", "100,000 {", "1,000 deep", "one too deep", "one too deep in an object",
    "one too deep in UTF-16"])
def test_a_body_nested_too_deeply_is_a_400_and_creates_nothing(
        suite: Suite, body: str | bytes) -> None:
    http = Client(suite.gateway)
    key = str(uuid.uuid4())
    _refused(http.post(ACCOUNTS, data=body, content_type="application/json",
                       headers={"Idempotency-Key": key}), "nested-too-deeply",
             f"more than {MAX_JSON_DEPTH} levels")
    clean = individual()
    resp = http.post(ACCOUNTS, json=clean, headers={"Idempotency-Key": key})
    assert resp.status_code == 201, resp.get_data(as_text=True)


def test_a_view_that_reads_the_body_itself_is_covered_too(embedded: Suite) -> None:
    """Lawyer verification reads its JSON with ``request.get_json(silent=True)``, which takes
    a ValueError for "no JSON" but let the parser's RecursionError through."""
    http = Client(embedded.gateway)
    _, token = person(http, "张三")
    resp = http.post("/api/identity/lawyer-verifications", data="[" * 100_000,
                     content_type="application/json", headers=bearer(token))
    _refused(resp, "nested-too-deeply", f"more than {MAX_JSON_DEPTH} levels")


def test_nesting_up_to_the_limit_reaches_the_view(embedded: Suite) -> None:
    """The limit's own depth is the view's to judge (a list is not an account: 422), and
    brackets in a string, an escaped quote among them, are text, however many."""
    http = Client(embedded.gateway)
    resp = http.post(ACCOUNTS, data=_nested(MAX_JSON_DEPTH), content_type="application/json")
    assert resp.status_code == 422, resp.get_data(as_text=True)
    name = '\\"' + "[{" * 49
    resp = http.post(ACCOUNTS, data=_with_name(individual(), f'"{name}"'),
                     content_type="application/json")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.get_json()["name"] == json.loads(f'"{name}"')
