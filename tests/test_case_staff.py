"""A case the trial system registers must name real staff, as the suite's own identity knows
them, in both tiers through the gateway: an unknown judge, a party named as clerk, another
court's judge or a disabled one is 422 unknown-staff; an identity matters cannot reach is 503;
either way nothing is written, and the same request with the same Idempotency-Key goes
through once identity answers again."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from werkzeug.test import Client

from ecourt.embedded import Suite
from servicekit.clients import InternalClient
from servicekit.tables import audit_trail, outbox
from services.matters.models import Case
from tests.factories import mobile
from tests.harness import PASSWORD, Court, bearer, person


@pytest.fixture(scope="module")
def courts(suite: Suite) -> dict[str, Any]:
    http = Client(suite.gateway)
    party, _token = person(http, "周俊雄")
    return {"http": http, "gz": Court(suite, http, "粤01", "广州市中级人民法院"),
            "sz": Court(suite, http, "粤02", "深圳市中级人民法院"), "party": party}


def _written(suite: Suite) -> tuple[int, int, int]:
    with suite.runtimes["matters"].db.transaction() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) or 0  # type: ignore[return-value]
                     for t in (Case.__table__, outbox, audit_trail))


def _register(court: Court, body: dict[str, Any], key: str | None = None):  # type: ignore[no-untyped-def]
    headers = bearer(court.token("specialist"))
    if key:
        headers["Idempotency-Key"] = key
    return court.http.post("/api/matters/cases", headers=headers, json=body)


def _refused(resp: Any, field: str) -> None:
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    problem = resp.get_json()
    assert problem["type"].endswith("/unknown-staff"), problem
    assert list(problem["errors"]["json"]) == [field], problem


def test_staff_identity_does_not_know_as_active_is_refused(suite: Suite,
                                                          courts: dict[str, Any]) -> None:
    gz, sz, http = courts["gz"], courts["sz"], courts["http"]
    parties = [("周俊雄", "plaintiff", courts["party"])]
    judge = http.post("/api/identity/staff", headers=bearer(gz.admin), json={
        "name": "将离任法官", "phone": mobile(), "password": PASSWORD, "department": "民一庭",
        "roles": ["judge"]}).get_json()["id"]
    disabled = http.post(f"/api/identity/staff/{judge}/disable", headers=bearer(gz.admin))
    assert disabled.status_code == 200, disabled.get_data(as_text=True)
    before = _written(suite)
    for field, overrides in (("judge_account_id", {"judge_account_id": str(uuid.uuid4())}),
                             ("clerk_account_id", {"clerk_account_id": courts["party"]}),
                             ("judge_account_id", {"judge_account_id": sz.id("judge")}),
                             ("judge_account_id", {"judge_account_id": judge})):
        resp = _register(gz, {**gz.case_body(parties), **overrides}, key=str(uuid.uuid4()))
        _refused(resp, field)
        assert _written(suite) == before, overrides
    ok = _register(gz, gz.case_body(parties))
    assert ok.status_code == 201, ok.get_data(as_text=True)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_identity_is_a_503_then_the_same_key_registers_the_case(
        suite: Suite, courts: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    gz = courts["gz"]
    matters = suite.runtimes["matters"]
    # matters' client as when distributed, with identity down
    monkeypatch.setenv("GATEWAY_UPSTREAM_IDENTITY", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(matters, "clients",
                        InternalClient(matters.settings.service_secret, timeout=1.0))
    body, key = gz.case_body([("周俊雄", "plaintiff", courts["party"])]), str(uuid.uuid4())
    before = _written(suite)
    down = _register(gz, body, key)
    assert down.status_code == 503, down.get_data(as_text=True)
    assert down.get_json()["type"].endswith("/service-unavailable")
    assert int(down.headers["Retry-After"]) > 0
    assert _written(suite) == before

    monkeypatch.undo()  # identity is back
    up = _register(gz, body, key)
    assert up.status_code == 201, up.get_data(as_text=True)
    again = _register(gz, body, key)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json()["id"] == up.get_json()["id"]
