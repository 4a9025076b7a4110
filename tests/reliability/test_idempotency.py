"""Issue check 4: one ``Idempotency-Key`` changes state once. The same registration sent twice
through the gateway makes one account and one event, and the second answer is the first one
replayed; the key reused for another body is refused with a 422 problem. In both tiers."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select
from werkzeug.test import Client

from ecourt.embedded import Suite
from servicekit.problems import PROBLEM_JSON
from servicekit.tables import outbox
from services.identity.models import Account
from tests.reliability.helpers import person

pytestmark = pytest.mark.real

REGISTERED = "identity.account.registered"


def _accounts(suite: Suite, phone: str) -> list[Account]:
    with suite.runtimes["identity"].db.transaction() as s:
        return list(s.scalars(select(Account).where(Account.phone == phone)))


def _events_about(suite: Suite, account_id: str) -> int:
    with suite.runtimes["identity"].db.transaction() as s:
        bodies = s.scalars(select(outbox.c.body).where(outbox.c.type == REGISTERED)).all()
    return sum(1 for b in bodies if json.loads(b).get("subject") == account_id)


def _keys(suite: Suite) -> int:
    from servicekit.tables import idempotency_keys

    with suite.runtimes["identity"].db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(idempotency_keys)) or 0)


def test_same_request_twice_changes_state_once(suite: Suite, http: Client) -> None:
    body = person()
    key = f"reg-{uuid.uuid4()}"
    headers = {"Idempotency-Key": key}
    keys_before = _keys(suite)

    first = http.post("/api/identity/accounts", json=body, headers=headers)
    assert first.status_code == 201, first.get_data(as_text=True)
    assert "Idempotent-Replayed" not in first.headers
    second = http.post("/api/identity/accounts", json=body, headers=headers)
    assert second.status_code == 201, second.get_data(as_text=True)
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.get_data() == first.get_data()
    assert second.headers["Content-Type"] == first.headers["Content-Type"]

    [account] = _accounts(suite, body["phone"])
    assert account.id == first.get_json()["id"]
    assert _events_about(suite, account.id) == 1
    assert _keys(suite) == keys_before + 1

    # without the key the same body is a new request: refused by the domain, not replayed
    again = http.post("/api/identity/accounts", json=body)
    assert again.status_code == 409 and "Idempotent-Replayed" not in again.headers
    assert len(_accounts(suite, body["phone"])) == 1
    assert _events_about(suite, account.id) == 1


def test_same_key_with_another_body_is_a_422_problem(suite: Suite, http: Client) -> None:
    body, other = person(), person()
    headers = {"Idempotency-Key": f"reg-{uuid.uuid4()}"}
    first = http.post("/api/identity/accounts", json=body, headers=headers)
    assert first.status_code == 201, first.get_data(as_text=True)

    reused = http.post("/api/identity/accounts", json=other, headers=headers)
    assert reused.status_code == 422, reused.get_data(as_text=True)
    assert reused.headers["Content-Type"].startswith(PROBLEM_JSON)
    problem = reused.get_json(force=True)
    assert problem["status"] == 422
    assert problem["type"].endswith("/idempotency-key-reused")
    assert _accounts(suite, other["phone"]) == []  # the second body was never applied
    [account] = _accounts(suite, body["phone"])
    assert _events_about(suite, account.id) == 1

    # the original request with its key still replays the first answer
    replay = http.post("/api/identity/accounts", json=body, headers=headers)
    assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.get_data() == first.get_data()
