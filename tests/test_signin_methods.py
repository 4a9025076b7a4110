"""Each way of signing in, through the gateway in both tiers, with its expiry and reuse:
password + image captcha, SMS code (read from the notifier's development sink, as a phone
would receive it), QR ticket confirmed by the mobile client, and password reset by SMS."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import update
from werkzeug.test import Client

from ecourt.embedded import Suite
from servicekit.db import utcnow
from servicekit.testing import wait_for
from services.identity.models_signin import QrTicket, SignInCode
from tests.factories import individual
from tests.harness import CAPTCHA_ANSWER, bearer, login, tokens

ANSWER = CAPTCHA_ANSWER


@pytest.fixture(scope="module")
def http(suite: Suite) -> Client:
    return Client(suite.gateway)


def _person(http: Client) -> dict[str, str]:
    body = individual()
    assert http.post("/api/identity/accounts", json=body).status_code == 201
    return body


def _ask_code(http: Client, phone: str, purpose: str = "login") -> None:
    """Ask for an SMS code with an image captcha solved first, as the login page does
    (identity asks for one always in production, and after codes were asked for from this
    client or for the phone)."""
    captcha = http.post("/api/identity/captchas").get_json()
    resp = http.post("/api/identity/sms-codes", json={
        "phone": phone, "purpose": purpose, "captcha_id": captcha["captcha_id"],
        "captcha_answer": ANSWER})
    assert resp.status_code == 202, resp.get_data(as_text=True)


def _code_sent_to(suite: Suite, phone: str, after: int = 0) -> str | None:
    """The newest verification code the development SMS sink 'delivered' to ``phone``."""
    sink = suite.runtimes["notifier"].extras["sms_provider"].path  # type: ignore[attr-defined]
    if not sink.exists():
        return None
    masked = phone[:3] + "****" + phone[-4:]
    lines = [json.loads(line) for line in sink.read_text(encoding="utf-8").splitlines()]
    codes = [m.group() for line in lines[after:]
             if line["to"] == masked and "验证码" in line["text"]
             for m in [re.search(r"\d{6}", line["text"])] if m]
    return codes[-1] if codes else None


def test_password_with_an_image_captcha_after_a_failure(http: Client) -> None:
    person = _person(http)
    creds = {"username": person["phone"], "password": person["password"]}
    assert http.post("/api/identity/tokens", json=dict(creds, password="wrong-pass-1")
                     ).status_code == 401
    asked = http.post("/api/identity/tokens", json=creds)
    assert asked.status_code == 400 and asked.get_json()["type"].endswith("/captcha-required")
    captcha = http.post("/api/identity/captchas").get_json()
    assert captcha["image"].startswith("data:image/png;base64,") and ANSWER not in json.dumps(
        captcha)
    signed_in = http.post("/api/identity/tokens", json=dict(
        creds, captcha_id=captcha["captcha_id"], captcha_answer=ANSWER))
    assert signed_in.status_code == 201, signed_in.get_data(as_text=True)
    reused = http.post("/api/identity/tokens", json=dict(
        creds, captcha_id=captcha["captcha_id"], captcha_answer=ANSWER))
    assert reused.status_code in (400, 401) and "captcha" in reused.get_json()["type"]


def test_sms_code_sign_in_is_single_use_and_expires(suite: Suite, http: Client) -> None:
    person = _person(http)
    _ask_code(http, person["phone"])
    code = wait_for(lambda: _code_sent_to(suite, person["phone"]), message="the code's SMS")
    first = http.post("/api/identity/tokens/sms", json={"phone": person["phone"], "code": code})
    assert first.status_code == 201, first.get_data(as_text=True)
    me = http.get("/api/identity/accounts/me", headers=bearer(first.get_json()["access_token"]))
    assert me.status_code == 200
    again = http.post("/api/identity/tokens/sms", json={"phone": person["phone"], "code": code})
    assert again.status_code == 401  # single use

    late = _person(http)
    _ask_code(http, late["phone"])
    late_code = wait_for(lambda: _code_sent_to(suite, late["phone"]), message="the SMS")
    with suite.runtimes["identity"].db.transaction() as s:  # five minutes pass
        s.execute(update(SignInCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    expired = http.post("/api/identity/tokens/sms", json={"phone": late["phone"],
                                                          "code": late_code})
    assert expired.status_code == 401


def test_qr_sign_in_confirmed_by_the_mobile_client_works_once(suite: Suite,
                                                              http: Client) -> None:
    person = _person(http)
    mobile = login(http, person["phone"], person["password"])
    ticket = http.post("/api/identity/qr-tickets").get_json()
    assert ticket["qr_payload"] == f"ecourt-login:{ticket['ticket']}"
    poll = f"/api/identity/qr-tickets/{ticket['ticket']}"
    secret = {"X-QR-Poll-Secret": ticket["poll_secret"]}  # the web's alone, not in the QR
    assert http.get(poll, headers=secret).get_json()["status"] == "pending"
    assert http.post(poll + "/confirm").status_code == 401  # the phone must be signed in
    assert http.post(poll + "/confirm", headers=bearer(mobile)).status_code == 204
    assert http.get(poll).status_code == 404  # the ticket alone (the QR code) gets nothing
    web = http.get(poll, headers=secret).get_json()
    assert web["status"] == "confirmed"
    mine = http.get("/api/identity/accounts/me", headers=bearer(web["access_token"])).get_json()
    assert mine["phone_masked"] == person["phone"][:3] + "****" + person["phone"][-4:]
    # tokens are handed out once
    assert http.get(poll, headers=secret).get_json().get("access_token") is None

    stale = http.post("/api/identity/qr-tickets").get_json()
    with suite.runtimes["identity"].db.transaction() as s:  # two minutes pass
        s.execute(update(QrTicket).values(expires_at=utcnow() - timedelta(seconds=1)))
    answer = http.get(f"/api/identity/qr-tickets/{stale['ticket']}",
                      headers={"X-QR-Poll-Secret": stale["poll_secret"]})
    assert answer.status_code == 410 or answer.get_json()["status"] == "expired"
    assert http.post(f"/api/identity/qr-tickets/{stale['ticket']}/confirm",
                     headers=bearer(mobile)).status_code in (404, 410)


def test_password_reset_by_sms_code_ends_old_sessions(suite: Suite, http: Client) -> None:
    person = _person(http)
    old = tokens(http, person["phone"], person["password"])
    _ask_code(http, person["phone"], "reset_password")
    code = wait_for(lambda: _code_sent_to(suite, person["phone"]), message="the reset code")
    reset = http.post("/api/identity/password-resets", json={
        "phone": person["phone"], "code": code, "new_password": "a-brand-new-pass-9"})
    assert reset.status_code == 204, reset.get_data(as_text=True)
    assert http.post("/api/identity/tokens/refresh",
                     json={"refresh_token": old["refresh_token"]}).status_code == 401
    assert login(http, person["phone"], "a-brand-new-pass-9")
