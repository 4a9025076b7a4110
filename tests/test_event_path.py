"""The pipes carry real traffic: an account registered in identity reaches delivery's consumer
(its inbox records it, the account gets a portal notification) and the notifier sends the SMS
request it leads to — in the embedded tier and on PostgreSQL + RabbitMQ."""

from __future__ import annotations

import json

from sqlalchemy import select, text
from werkzeug.test import Client

from ecourt.contracts import validate_event
from ecourt.embedded import Suite
from servicekit.tables import inbox, outbox
from servicekit.testing import wait_for
from services.notifier.models import SmsMessage
from tests.factories import individual


def _register(http: Client, body: dict[str, str]) -> dict[str, object]:
    resp = http.post("/api/identity/accounts", json=body)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def _login(http: Client, body: dict[str, str]) -> str:
    resp = http.post("/api/identity/tokens",
                     json={"username": body["phone"], "password": body["password"]})
    assert resp.status_code == 201
    return resp.get_json()["access_token"]


def test_registration_reaches_delivery_and_the_notifier(suite: Suite, http: Client) -> None:
    person = individual()
    account = _register(http, person)

    def delivered() -> bool:
        with suite.runtimes["delivery"].db.transaction() as s:
            return bool(s.scalar(select(inbox.c.event_id).where(
                inbox.c.consumer == "delivery", inbox.c.type == "identity.account.registered")
                .limit(1)))
    wait_for(delivered, message="delivery's inbox to record the registration")

    def sms() -> list[SmsMessage]:
        with suite.runtimes["notifier"].db.transaction() as s:
            return list(s.scalars(select(SmsMessage).where(
                SmsMessage.account_id == account["id"])))
    [message] = wait_for(sms, message="the notifier to send the SMS")
    assert message.status == "sent"
    assert message.phone_masked == person["phone"][:3] + "****" + person["phone"][-4:]
    assert "注册" in message.text

    token = _login(http, person)
    box = http.get("/api/delivery/inbox", headers={"Authorization": f"Bearer {token}"})
    assert box.status_code == 200
    assert box.get_json()["unread"] == 1
    assert box.get_json()["items"][0]["title"] == "欢迎使用人民法院在线服务"


def test_published_events_match_their_contracts_and_carry_no_personal_data(
        suite: Suite, http: Client) -> None:
    person = individual()
    account = _register(http, person)
    wait_for(lambda: _outbox_rows(suite, "delivery", account["id"]),
             message="delivery to request the SMS")
    rows = _outbox_rows(suite, "identity", account["id"]) + _outbox_rows(suite, "delivery",
                                                                       account["id"])
    assert {r["type"] for r in rows} == {"identity.account.registered",
                                         "delivery.sms.requested"}
    for envelope in rows:
        validate_event(envelope)
        raw = json.dumps(envelope, ensure_ascii=False)
        assert person["phone"] not in raw and person["id_number"] not in raw
    sms = next(r for r in rows if r["type"] == "delivery.sms.requested")
    registered = next(r for r in rows if r["type"] == "identity.account.registered")
    assert sms["causationid"] == registered["id"]


def _outbox_rows(suite: Suite, service: str, subject: str) -> list[dict[str, object]]:
    with suite.runtimes[service].db.transaction() as s:
        bodies = s.scalars(select(outbox.c.body).where(outbox.c.exchange == "topic")).all()
    return [e for e in map(json.loads, bodies) if e.get("subject") == subject]


def test_every_service_is_healthy_and_ready_through_the_gateway(suite: Suite,
                                                               http: Client) -> None:
    for name in suite.apps:
        assert http.get(f"/api/{name}/healthz").get_json()["status"] == "ok"
        ready = http.get(f"/api/{name}/readyz")
        assert ready.status_code == 200, ready.get_data(as_text=True)
        assert ready.headers["X-Request-ID"]
    with suite.runtimes["identity"].db.transaction() as s:
        assert s.execute(text("SELECT 1")).scalar() == 1
