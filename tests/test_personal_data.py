"""No ID-card number, mobile number or password in clear in any log line, event or API
response (RELIABILITY S6): real traffic through the gateway, then everything is scanned."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.test import Client

from ecourt.embedded import Suite
from servicekit.tables import outbox
from servicekit.testing import wait_for
from services.notifier.models import SmsMessage
from tests.factories import individual
from tests.harness import tokens

ID_NUMBER = re.compile(r"(?<![0-9])\d{17}[\dXx](?![0-9])")
MOBILE = re.compile(r"(?<![0-9])1[3-9]\d{9}(?![0-9])")


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """The message and every extra field: what the JSON log line would carry."""
        extras = {k: str(v) for k, v in record.__dict__.items() if k not in _STANDARD}
        self.lines.append(record.getMessage() + " " + json.dumps(extras, ensure_ascii=False))


@pytest.fixture
def captured() -> Any:
    handler = Capture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_no_personal_data_in_logs_events_or_responses(suite: Suite, captured: Capture) -> None:
    http = Client(suite.gateway)
    people = [individual() for _ in range(3)]
    answers: list[str] = []
    for person in people:
        answers.append(http.post("/api/identity/accounts", json=person).get_data(as_text=True))
        bad = dict(person, phone=person["phone"][:-1] + "x")  # a refused registration too
        answers.append(http.post("/api/identity/accounts", json=bad).get_data(as_text=True))
        token = tokens(http, person["id_number"], person["password"])
        http.post("/api/identity/tokens", json={"username": person["phone"],
                                                "password": "wrong-password-1"})
        me = http.get("/api/identity/accounts/me",
                      headers={"Authorization": f"Bearer {token['access_token']}"})
        answers.append(me.get_data(as_text=True))
    for person in people:
        wait_for(lambda p=person: _sms_sent(suite, p["phone"]), message="the welcome SMS")

    secrets = [v for p in people for v in (p["id_number"], p["phone"], p["password"])]
    events = [body for rt in suite.runtimes.values() for body in _outbox_bodies(rt.db)]
    assert events, "the scan must see real events"
    assert captured.lines, "the scan must see real log records"
    for where, texts in (("log", captured.lines), ("event", events), ("response", answers)):
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"{where} carries personal data in clear: {text[:200]}"
            assert not ID_NUMBER.search(text), f"{where} carries an ID number: {text[:200]}"
            assert not MOBILE.search(text), f"{where} carries a mobile number: {text[:200]}"


def _outbox_bodies(db: Any) -> list[str]:
    with db.transaction() as s:
        return list(s.scalars(select(outbox.c.body)))


def _sms_sent(suite: Suite, phone: str) -> bool:
    masked = phone[:3] + "****" + phone[-4:]
    with suite.runtimes["notifier"].db.transaction() as s:
        return bool(s.scalar(select(SmsMessage.event_id).where(
            SmsMessage.phone_masked == masked)))
