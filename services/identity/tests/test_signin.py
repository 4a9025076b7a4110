"""The other ways to sign in [003 §1.2]: image captchas, SMS codes (sign-in, password reset,
change of phone), QR sign-in — single use, short-lived, throttled (RELIABILITY S3), and no
code or phone in clear in any outbox row, log record or answer (S6)."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import delete, select
from sqlalchemy import text as sql_text

from servicekit.sealed import unseal
from servicekit.tables import outbox
from servicekit.testing import answered_while_writing
from services.identity import signin_codes, signin_qr
from services.identity.models import Account, LoginFailure
from services.identity.models_signin import Captcha, QrTicket, SignInCode, SignInRequest
from services.identity.signin_captcha import CaptchaService
from services.identity.signin_throttle import phone_key
from services.identity.tests.conftest import PASSWORD, Identity
from tests.factories import mobile

ANSWER = "AAAAA"
_MOBILE = re.compile(r"(?<![\w.:-])1[3-9]\d{9}(?!\w)")


@pytest.fixture
def ident(identity: Identity) -> Identity:
    identity.rt.extras["captcha_service"] = CaptchaService(alphabet="A")
    identity.rt.extras["captcha_after_failure"] = True
    return identity


def _slug(resp: Any) -> str:
    return resp.get_json()["type"].rsplit("/", 1)[-1]


def _events(identity: Identity) -> list[dict[str, Any]]:
    with identity.rt.db.transaction() as session:
        rows = session.execute(select(outbox.c.type, outbox.c.body).order_by(outbox.c.id)).all()
    return [json.loads(body) for type_, body in rows if type_ == "identity.code.issued"]


def _code(identity: Identity, phone: str, purpose: str, account_id: str | None = None) -> str:
    """The code last sent to ``phone`` for ``purpose`` (for ``account_id``'s request, when
    given), as delivery would open it."""
    secret = identity.rt.settings.service_secret
    for event in reversed(_events(identity)):
        data = event["data"]
        if data["purpose"] == purpose and unseal(data["phone_sealed"], secret) == phone \
                and account_id in (None, data["account_id"]):
            return unseal(data["code_sealed"], secret)
    raise AssertionError(f"no {purpose} code sent")


def _forget_requests(identity: Identity) -> None:
    """As if the throttling windows had passed."""
    with identity.rt.db.transaction() as session:
        session.execute(delete(SignInRequest))


def _request(identity: Identity, phone: str, purpose: str = "login",
             ip: str = "127.0.0.1", captcha: bool | dict[str, str] = False) -> Any:
    """Ask for a code from ``ip``; with ``captcha``, a solved one (from that address), or
    the one given."""
    if captcha is True:
        captcha = _captcha(identity, ip=ip)
    return identity.call("POST", "/sms-codes", ip=ip,
                         json={"phone": phone, "purpose": purpose, **(captcha or {})})


def _age(identity: Identity, model: Any, seconds: int, column: str = "expires_at") -> None:
    """Move a table's times back, as if ``seconds`` had passed."""
    with identity.rt.db.transaction() as session:
        for row in session.scalars(select(model)).all():
            setattr(row, column, getattr(row, column) - timedelta(seconds=seconds))


# --- captchas -----------------------------------------------------------------------------

def test_a_captcha_is_a_real_png_without_its_answer(ident: Identity) -> None:
    ident.rt.extras["captcha_service"] = CaptchaService()
    resp = ident.call("POST", "/captchas")
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["expires_in"] == 120 and set(body) == {"captcha_id", "image", "expires_in"}
    assert body["image"].startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(body["image"].split(",", 1)[1])))
    assert image.format == "PNG" and image.size[0] >= 100
    assert sum(1 for n in image.convert("L").histogram() if n) > 10  # drawn, with noise
    with ident.rt.db.transaction() as session:
        row = session.get(Captcha, body["captcha_id"])
        assert row is not None and len(row.answer_hash) == 64
    text = CaptchaService().text()
    assert len(text) == 5 and not set(text) & set("0O1IL2Z5S8B")


def _login(identity: Identity, username: str, password: str = PASSWORD, ip: str = "127.0.0.1",
           **captcha: str) -> Any:
    return identity.call("POST", "/tokens", ip=ip,
                         json={"username": username, "password": password, **captcha})


def _captcha(identity: Identity, answer: str = ANSWER, ip: str = "127.0.0.1") -> dict[str, str]:
    captcha_id = identity.call("POST", "/captchas", ip=ip).get_json()["captcha_id"]
    return {"captcha_id": captcha_id, "captcha_answer": answer}


def test_captcha_required_after_a_failed_attempt(ident: Identity) -> None:
    person, _ = ident.register()
    assert _login(ident, person["phone"]).status_code == 201  # no failure yet: no captcha
    assert _login(ident, person["phone"], "wrong-password").status_code == 401
    missing = _login(ident, person["id_number"])  # the same account, another username
    assert missing.status_code == 400 and _slug(missing) == "captcha-required"
    wrong = _login(ident, person["phone"], **_captcha(ident, "BBBBB"))
    assert wrong.status_code == 401 and _slug(wrong) == "captcha-invalid"
    ok = _login(ident, person["phone"], **_captcha(ident, ANSWER.lower()))
    assert ok.status_code == 201, ok.get_data(as_text=True)


def test_captcha_required_for_a_client_address_with_a_failure(ident: Identity) -> None:
    person, _ = ident.register()
    other, _ = ident.register()
    assert _login(ident, other["phone"], "wrong-password", ip="10.0.0.9").status_code == 401
    assert _slug(_login(ident, person["phone"], ip="10.0.0.9")) == "captcha-required"
    assert _login(ident, person["phone"], ip="10.0.0.10").status_code == 201


def test_a_captcha_is_single_use_and_expires(ident: Identity) -> None:
    person, _ = ident.register()
    ident.rt.extras["require_captcha"] = True
    assert _slug(_login(ident, person["phone"])) == "captcha-required"
    captcha = _captcha(ident)
    assert _login(ident, person["phone"], **captcha).status_code == 201
    reused = _login(ident, person["phone"], **captcha)
    assert reused.status_code == 401 and _slug(reused) == "captcha-invalid"
    # a wrong answer uses it up too
    captcha = _captcha(ident)
    assert _login(ident, person["phone"], captcha_id=captcha["captcha_id"],
                  captcha_answer="XXXXX").status_code == 401
    assert _login(ident, person["phone"], **captcha).status_code == 401
    # expired after 2 minutes
    captcha = _captcha(ident)
    _age(ident, Captcha, 121)
    assert _slug(_login(ident, person["phone"], **captcha)) == "captcha-invalid"
    assert _slug(_login(ident, person["phone"], captcha_id="nope",
                        captcha_answer=ANSWER)) == "captcha-invalid"


def test_captcha_always_required_by_environment(ident: Identity,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    person, _ = ident.register()
    monkeypatch.setenv("IDENTITY_REQUIRE_CAPTCHA", "1")
    assert _slug(_login(ident, person["phone"])) == "captcha-required"
    assert _login(ident, person["phone"], **_captcha(ident)).status_code == 201


# --- SMS codes ----------------------------------------------------------------------------

def test_sms_sign_in_happy_path_and_single_use(ident: Identity) -> None:
    person, account = ident.register()
    resp = _request(ident, person["phone"])
    assert resp.status_code == 202 and resp.get_json() == {"expires_in": 300}
    event = _events(ident)[-1]
    assert event["data"]["account_id"] == account["id"]
    assert event["data"]["purpose"] == "login" and event["subject"] == account["id"]
    from ecourt.contracts import validate_event
    validate_event(event)
    code = _code(ident, person["phone"], "login")
    assert re.fullmatch(r"\d{6}", code)
    tokens = ident.call("POST", "/tokens/sms", json={"phone": person["phone"], "code": code})
    assert tokens.status_code == 201, tokens.get_data(as_text=True)
    assert tokens.headers["Cache-Control"] == "no-store"
    pair = tokens.get_json()
    me = ident.call("GET", "/accounts/me", token=pair["access_token"])
    assert me.get_json()["id"] == account["id"]
    refreshed = ident.call("POST", "/tokens/refresh",
                           json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 201
    again = ident.call("POST", "/tokens/sms", json={"phone": person["phone"], "code": code})
    assert again.status_code == 401 and _slug(again) == "invalid-code"


def test_unknown_phone_gets_the_same_answer_and_no_event(ident: Identity) -> None:
    resp = _request(ident, mobile())
    assert resp.status_code == 202 and resp.get_json() == {"expires_in": 300}
    assert _events(ident) == []


def test_an_expired_code_is_refused(ident: Identity) -> None:
    person, _ = ident.register()
    _request(ident, person["phone"])
    code = _code(ident, person["phone"], "login")
    _age(ident, SignInCode, 301)
    resp = ident.call("POST", "/tokens/sms", json={"phone": person["phone"], "code": code})
    assert resp.status_code == 401 and _slug(resp) == "invalid-code"


def test_a_new_code_replaces_the_old_one(ident: Identity) -> None:
    person, _ = ident.register()
    _request(ident, person["phone"])
    first = _code(ident, person["phone"], "login")
    _forget_requests(ident)
    _request(ident, person["phone"])
    second = _code(ident, person["phone"], "login")
    if first != second:
        assert ident.call("POST", "/tokens/sms", json={
            "phone": person["phone"], "code": first}).status_code == 401
    assert ident.call("POST", "/tokens/sms", json={
        "phone": person["phone"], "code": second}).status_code == 201


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _forget_failures(identity: Identity) -> None:
    """As if the password throttle's 15 minutes had passed."""
    with identity.rt.db.transaction() as session:
        session.execute(delete(LoginFailure))


def _attempts(identity: Identity, phone: str) -> tuple[int, bool]:
    """Wrong tries of the phone's newest code, and whether it is spent."""
    with identity.rt.db.transaction() as session:
        row = session.scalars(select(SignInCode).where(
            SignInCode.phone_key == phone_key(phone, identity.rt.settings.service_secret))
            .order_by(SignInCode.created_at.desc())).first()
        assert row is not None
        return row.attempts, row.used_at is not None


def test_five_wrong_tries_spend_the_code(ident: Identity) -> None:
    person, _ = ident.register()
    _request(ident, person["phone"])
    code = _code(ident, person["phone"], "login")
    for i in range(5):
        resp = ident.call("POST", "/tokens/sms", ip=f"10.5.0.{i}",
                          json={"phone": person["phone"], "code": _wrong(code)})
        assert resp.status_code == 401
    # five failures on the account: throttled as password sign-in is, the right code too
    resp = ident.call("POST", "/tokens/sms", json={"phone": person["phone"], "code": code})
    assert resp.status_code == 429 and _slug(resp) == "too-many-attempts"
    _forget_failures(ident)
    resp = ident.call("POST", "/tokens/sms", json={"phone": person["phone"], "code": code})
    assert resp.status_code == 401 and _slug(resp) == "invalid-code"


def test_a_client_that_keeps_failing_codes_is_throttled_and_spends_no_one_s_code(
        ident: Identity) -> None:
    """Wrong SMS codes count in the password throttle, per client address and per account
    (RELIABILITY S3): after 5 in the window the address gets 429 on every code route, before
    any code is tried, so it cannot burn other people's codes."""
    victims = [ident.register()[0] for _ in range(3)]
    codes = []
    for i, person in enumerate(victims):
        _request(ident, person["phone"], ip=f"10.6.0.{i}")
        codes.append(_code(ident, person["phone"], "login"))
    attacker = "203.0.113.9"
    for phone, code in [(victims[0]["phone"], codes[0])] * 4 + [(victims[1]["phone"], codes[1])]:
        resp = ident.call("POST", "/tokens/sms", ip=attacker,
                          json={"phone": phone, "code": _wrong(code)})
        assert resp.status_code == 401, resp.get_data(as_text=True)
    for person, code in zip(victims, codes, strict=True):
        resp = ident.call("POST", "/tokens/sms", ip=attacker,
                          json={"phone": person["phone"], "code": _wrong(code)})
        assert resp.status_code == 429 and _slug(resp) == "too-many-attempts"
        assert 0 < int(resp.headers["Retry-After"]) <= 900
    reset = ident.call("POST", "/password-resets", ip=attacker, json={
        "phone": victims[2]["phone"], "code": codes[2], "new_password": "attackers-choice"})
    assert reset.status_code == 429
    unknown = ident.call("POST", "/tokens/sms", ip=attacker,
                         json={"phone": mobile(), "code": "123456"})
    assert unknown.status_code == 429
    # refused before checking: no try counted, no code spent
    assert _attempts(ident, victims[0]["phone"]) == (4, False)
    assert _attempts(ident, victims[2]["phone"]) == (0, False)
    for i, (person, code) in enumerate(zip(victims, codes, strict=True)):
        resp = ident.call("POST", "/tokens/sms", ip=f"10.6.1.{i}",
                          json={"phone": person["phone"], "code": code})
        assert resp.status_code == 201, resp.get_data(as_text=True)


def test_wrong_reset_codes_are_throttled_per_account(ident: Identity) -> None:
    person, _ = ident.register()
    _request(ident, person["phone"], "reset_password")
    code = _code(ident, person["phone"], "reset_password")
    body = {"phone": person["phone"], "new_password": "a-brand-new-secret"}
    for i in range(4):
        resp = ident.call("POST", "/password-resets", ip=f"10.7.0.{i}",
                          json={**body, "code": _wrong(code)})
        assert resp.status_code == 401
    # a fifth failure, from a fifth address (a login code, of which there is none), fills
    # the account's counter
    assert ident.call("POST", "/tokens/sms", ip="10.7.1.1", json={
        "phone": person["phone"], "code": code}).status_code == 401
    resp = ident.call("POST", "/password-resets", ip="10.7.2.1", json={**body, "code": code})
    assert resp.status_code == 429 and _slug(resp) == "too-many-attempts"
    assert _attempts(ident, person["phone"]) == (4, False)
    _forget_failures(ident)
    assert ident.call("POST", "/password-resets", ip="10.7.2.1",
                      json={**body, "code": code}).status_code == 204


def test_wrong_phone_change_codes_are_throttled(ident: Identity) -> None:
    person, _ = ident.register()
    token = ident.tokens(person["phone"])["access_token"]
    ident.call("POST", "/accounts/me/phone-change", json={"new_phone": mobile()}, token=token)
    confirm = "/accounts/me/phone-change/confirm"
    for _ in range(5):
        resp = ident.call("POST", confirm, json={"old_code": "000000", "new_code": "000000"},
                          token=token, ip="10.8.0.1")
        assert resp.status_code == 401
    resp = ident.call("POST", confirm, json={"old_code": "000000", "new_code": "000000"},
                      token=token, ip="10.8.0.2")
    assert resp.status_code == 429 and _slug(resp) == "too-many-attempts"


def test_codes_are_throttled_per_phone_and_address(ident: Identity) -> None:
    person, _ = ident.register()
    assert _request(ident, person["phone"], ip="10.1.0.1").status_code == 202
    soon = _request(ident, person["phone"], ip="10.1.0.1", captcha=True)  # within 60 s
    assert soon.status_code == 429 and 0 < int(soon.headers["Retry-After"]) <= 60
    for _ in range(4):  # five an hour
        _age(ident, SignInRequest, 61, "requested_at")
        assert _request(ident, person["phone"], ip="10.1.0.1", captcha=True).status_code == 202
    _age(ident, SignInRequest, 61, "requested_at")
    sixth = _request(ident, person["phone"], ip="10.1.0.1", captcha=True)
    assert sixth.status_code == 429 and int(sixth.headers["Retry-After"]) > 60
    # an unknown phone is throttled the same way: throttling tells nothing
    stranger = mobile()
    assert _request(ident, stranger, ip="10.1.3.1").status_code == 202
    assert _request(ident, stranger, ip="10.1.3.1", captcha=True).status_code == 429


def test_codes_are_throttled_per_client_address(ident: Identity) -> None:
    for _ in range(5):
        assert _request(ident, mobile(), ip="10.2.0.1", captcha=True).status_code == 202
    resp = _request(ident, mobile(), ip="10.2.0.1", captcha=True)
    assert resp.status_code == 429 and "Retry-After" in resp.headers
    assert _request(ident, mobile(), ip="10.2.0.2").status_code == 202


def test_a_trailing_newline_is_neither_a_phone_nor_a_code(ident: Identity) -> None:
    """``$`` with ``re.match`` let "13800138000\\n" through: another throttling key for the
    same phone, and a phone change that missed the taken check (RELIABILITY S7)."""
    person, _ = ident.register()
    other, _ = ident.register()
    token = ident.tokens(person["phone"])["access_token"]
    sms = _request(ident, person["phone"] + "\n")
    assert sms.status_code == 422 and "phone" in sms.get_json()["errors"]["json"]
    change = ident.call("POST", "/accounts/me/phone-change",
                        json={"new_phone": other["phone"] + "\n"}, token=token)
    assert change.status_code == 422 and "new_phone" in change.get_json()["errors"]["json"]
    code = ident.call("POST", "/tokens/sms", json={"phone": person["phone"], "code": "123456\n"})
    assert code.status_code == 422 and "code" in code.get_json()["errors"]["json"]
    assert _events(ident) == []


# --- password reset -----------------------------------------------------------------------

def test_password_reset_by_code_ends_every_sign_in(ident: Identity) -> None:
    person, _ = ident.register()
    old = ident.tokens(person["phone"])
    assert _request(ident, person["phone"], "reset_password").status_code == 202
    code = _code(ident, person["phone"], "reset_password")
    # a reset code does not sign in
    assert ident.call("POST", "/tokens/sms", json={
        "phone": person["phone"], "code": code}).status_code == 401
    resp = ident.call("POST", "/password-resets", json={
        "phone": person["phone"], "code": code, "new_password": "a-brand-new-secret"})
    assert resp.status_code == 204, resp.get_data(as_text=True)
    assert ident.call("POST", "/tokens/refresh",
                      json={"refresh_token": old["refresh_token"]}).status_code == 401
    # the wrong code above counts for this address: a captcha would be asked here
    assert ident.tokens(person["phone"], "a-brand-new-secret", ip="10.9.0.1")
    again = ident.call("POST", "/password-resets", json={
        "phone": person["phone"], "code": code, "new_password": "yet-another-secret"})
    assert again.status_code == 401


# --- change of phone ----------------------------------------------------------------------

def test_phone_change_needs_both_codes(ident: Identity) -> None:
    person, account = ident.register()
    token = ident.tokens(person["phone"])["access_token"]
    new_phone = mobile()
    resp = ident.call("POST", "/accounts/me/phone-change", json={"new_phone": new_phone},
                      token=token)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    old_code = _code(ident, person["phone"], "change_phone_old")
    new_code = _code(ident, new_phone, "change_phone_new")
    wrong = f"{(int(new_code) + 1) % 1_000_000:06d}"
    confirm = "/accounts/me/phone-change/confirm"
    assert ident.call("POST", confirm, json={"old_code": old_code},
                      token=token).status_code == 422
    bad = ident.call("POST", confirm, json={"old_code": old_code, "new_code": wrong},
                     token=token)
    assert bad.status_code == 401
    swapped = ident.call("POST", confirm, json={"old_code": new_code, "new_code": old_code},
                         token=token)
    assert swapped.status_code == 401 or old_code == new_code
    ok = ident.call("POST", confirm, json={"old_code": old_code, "new_code": new_code},
                    token=token)
    assert ok.status_code == 200, ok.get_data(as_text=True)
    assert ok.get_json()["phone_masked"] == new_phone[:3] + "****" + new_phone[-4:]
    assert ok.get_json()["id"] == account["id"]
    # the wrong codes above count for this address (a captcha would be asked): another one
    assert ident.login(new_phone, ip="10.9.0.2").status_code == 201
    assert ident.login(person["phone"], ip="10.9.0.2").status_code in (400, 401)


def test_phone_change_does_not_tell_whether_a_number_is_taken(ident: Identity) -> None:
    """A taken number was a 409 phone-taken, before the throttle: any signed-in user could
    learn who is registered. Now it is answered like a free one, the old phone's code goes
    out as usual, the taken number gets nothing, and the change cannot be confirmed."""
    person, _ = ident.register()
    other, _ = ident.register()
    token = ident.tokens(person["phone"])["access_token"]
    free = ident.call("POST", "/accounts/me/phone-change", json={"new_phone": mobile()},
                      token=token)
    _forget_requests(ident)
    taken = ident.call("POST", "/accounts/me/phone-change", json={"new_phone": other["phone"]},
                       token=token)
    assert taken.status_code == free.status_code == 202, taken.get_data(as_text=True)
    assert taken.get_json() == free.get_json()
    secret = ident.rt.settings.service_secret
    sent_to = [unseal(e["data"]["phone_sealed"], secret) for e in _events(ident)]
    assert sent_to.count(person["phone"]) == 2 and other["phone"] not in sent_to
    old_code = _code(ident, person["phone"], "change_phone_old")
    with ident.rt.db.transaction() as session:  # the new code was sent to nobody...
        newest = session.scalars(select(SignInCode).where(
            SignInCode.purpose == "change_phone_new").order_by(
            SignInCode.created_at.desc())).first()
        assert newest is not None and newest.used_at is None
        assert unseal(newest.target_sealed or "", secret) == other["phone"]
    for guess in ("000000", "123456"):  # ... so it cannot be confirmed
        late = ident.call("POST", "/accounts/me/phone-change/confirm",
                          json={"old_code": old_code, "new_code": guess}, token=token)
        assert late.status_code == 401
    assert ident.login(other["phone"], ip="10.9.0.3").status_code == 201


def test_phone_change_is_throttled_before_anything_is_looked_up(ident: Identity) -> None:
    person, _ = ident.register()
    token = ident.tokens(person["phone"])["access_token"]
    registered = [ident.register()[0]["phone"] for _ in range(2)]
    answers = []
    for i, phone in enumerate([mobile(), registered[0], mobile()]):
        _age(ident, SignInRequest, 61, "requested_at")  # past the account's 1 a minute
        answers.append(ident.call("POST", "/accounts/me/phone-change",
                                  json={"new_phone": phone}, token=token, ip=f"10.4.0.{i}"))
    assert [a.status_code for a in answers] == [202] * 3
    _age(ident, SignInRequest, 61, "requested_at")
    for phone in (registered[1], mobile()):  # the fourth in the hour: taken or not, 429
        resp = ident.call("POST", "/accounts/me/phone-change", json={"new_phone": phone},
                          token=token, ip="10.4.1.1")
        assert resp.status_code == 429 and "Retry-After" in resp.headers


def test_phone_change_to_a_number_taken_before_the_confirmation_is_a_conflict(
        ident: Identity) -> None:
    person, _ = ident.register()
    token = ident.tokens(person["phone"])["access_token"]
    new_phone = mobile()
    ident.call("POST", "/accounts/me/phone-change", json={"new_phone": new_phone}, token=token)
    old_code = _code(ident, person["phone"], "change_phone_old")
    new_code = _code(ident, new_phone, "change_phone_new")
    ident.register(phone=new_phone)
    late = ident.call("POST", "/accounts/me/phone-change/confirm",
                      json={"old_code": old_code, "new_code": new_code}, token=token)
    assert late.status_code == 409
    assert ident.call("POST", "/accounts/me/phone-change",
                      json={"new_phone": mobile()}).status_code == 401


def _start_change(identity: Identity, person: dict[str, str], account: dict[str, Any],
                  new_phone: str, ip: str) -> tuple[str, dict[str, str]]:
    """Sign ``person`` in and start a change to ``new_phone``: their token and both codes."""
    token = identity.tokens(person["phone"], ip=ip)["access_token"]
    _forget_requests(identity)  # past the account's one start a minute
    resp = identity.call("POST", "/accounts/me/phone-change", json={"new_phone": new_phone},
                         token=token, ip=ip)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return token, {"old_code": _code(identity, person["phone"], "change_phone_old"),
                   "new_code": _code(identity, new_phone, "change_phone_new", account["id"])}


def test_another_account_s_change_to_the_same_number_does_not_cancel_a_pending_one(
        ident: Identity) -> None:
    """B starting a change to A's pending number spent A's code (a new code replaced every
    live code of that phone), so any signed-in user could stop anyone's change. A pending
    change is now its account's: both stay pending, the first confirmation takes the number
    and the other is a clean 409 phone-taken."""
    a_person, a_account = ident.register()
    b_person, b_account = ident.register()
    number = mobile()
    a_token, a_codes = _start_change(ident, a_person, a_account, number, "10.7.0.1")
    b_token, b_codes = _start_change(ident, b_person, b_account, number, "10.7.0.2")
    confirm = "/accounts/me/phone-change/confirm"
    ok = ident.call("POST", confirm, json=a_codes, token=a_token, ip="10.7.0.1")
    assert ok.status_code == 200, ok.get_data(as_text=True)
    assert ok.get_json()["id"] == a_account["id"]
    late = ident.call("POST", confirm, json=b_codes, token=b_token, ip="10.7.0.2")
    assert late.status_code == 409, late.get_data(as_text=True)
    assert late.content_type == "application/problem+json" and _slug(late) == "phone-taken"
    with ident.rt.db.transaction() as session:
        owners = session.scalars(select(Account.id).where(Account.phone == number)).all()
        assert owners == [a_account["id"]]
        assert session.get(Account, b_account["id"]).phone == b_person["phone"]
    assert ident.call("POST", confirm, json=a_codes, token=a_token,
                      ip="10.7.0.1").status_code == 401  # single use still


def test_a_new_change_replaces_the_account_s_own_pending_one(ident: Identity) -> None:
    person, account = ident.register()
    token, first = _start_change(ident, person, account, mobile(), "10.7.1.1")
    second_phone = mobile()
    _, second = _start_change(ident, person, account, second_phone, "10.7.1.1")
    confirm = "/accounts/me/phone-change/confirm"
    with ident.rt.db.transaction() as session:
        live = session.scalars(select(SignInCode).where(
            SignInCode.account_id == account["id"], SignInCode.used_at.is_(None))).all()
        assert sorted(row.purpose for row in live) == ["change_phone_new", "change_phone_old"]
    if first["new_code"] != second["new_code"]:
        stale = ident.call("POST", confirm, token=token, ip="10.7.1.1",
                           json={"old_code": second["old_code"], "new_code": first["new_code"]})
        assert stale.status_code == 401
    ok = ident.call("POST", confirm, json=second, token=token, ip="10.7.1.1")
    assert ok.status_code == 200, ok.get_data(as_text=True)
    assert ok.get_json()["phone_masked"] == second_phone[:3] + "****" + second_phone[-4:]


def _wait_until_a_statement_waits_for_a_lock(identity: Identity) -> None:
    """Bounded: until another PostgreSQL session of this database waits for a lock."""
    for _ in range(200):
        with identity.rt.db.transaction() as session:
            if session.scalar(sql_text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'")):
                return
        time.sleep(0.05)
    raise AssertionError("the confirmation never waited for the number's row lock")


@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.real)],
                         indirect=True)
def test_a_number_taken_while_a_change_is_confirmed_is_a_clean_409(ident: Identity) -> None:
    """The confirmation's check cannot see a number another transaction is taking (another
    account's confirmation in flight): the unique phone index makes it wait and then refuse,
    a 409 problem, not an IntegrityError's 500. SQLite serialises writers: its check sees."""
    person, account = ident.register()
    _, other = ident.register()
    number = mobile()
    token, codes = _start_change(ident, person, account, number, "10.7.2.1")
    answers: list[Any] = []
    confirming = threading.Thread(target=lambda: answers.append(ident.call(
        "POST", "/accounts/me/phone-change/confirm", json=codes, token=token, ip="10.7.2.1")))
    with ident.rt.db.transaction() as other_confirmation:
        other_confirmation.get(Account, other["id"]).phone = number  # type: ignore[union-attr]
        other_confirmation.flush()
        confirming.start()
        _wait_until_a_statement_waits_for_a_lock(ident)
    confirming.join(timeout=30)
    [late] = answers
    assert late.status_code == 409, late.get_data(as_text=True)
    assert late.content_type == "application/problem+json" and _slug(late) == "phone-taken"
    with ident.rt.db.transaction() as session:
        assert session.scalars(select(Account.id).where(Account.phone == number)).all() == [
            other["id"]]


# --- what a phone change counts against ----------------------------------------------------

class _Clock:
    """signin_codes' clock, moved by hand: the throttling windows and the codes' lifetimes
    follow it, so Retry-After is exact and two runs at the same moment answer alike."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: int = 61) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(signin_codes, "utcnow", fake)
    return fake


def _change(identity: Identity, token: str, new_phone: str, ip: str) -> Any:
    return identity.call("POST", "/accounts/me/phone-change", json={"new_phone": new_phone},
                         token=token, ip=ip)


def _signed_in(identity: Identity) -> tuple[dict[str, str], dict[str, Any], str]:
    """A new account, and an access token for it."""
    person, account = identity.register()
    return person, account, identity.tokens(person["phone"])["access_token"]


def _sent(identity: Identity, phone: str, purpose: str = "change_phone_new") -> int:
    secret = identity.rt.settings.service_secret
    return sum(1 for e in _events(identity) if e["data"]["purpose"] == purpose
               and unseal(e["data"]["phone_sealed"], secret) == phone)


def test_changes_started_to_a_number_leave_its_owner_s_sign_in_and_reset_alone(
        ident: Identity, clock: _Clock) -> None:
    """B's starts of a change to A's number spent that number's allowance of codes (1 a
    minute, 5 an hour, shared with sign-in and reset): A could not sign in by SMS or reset
    the password for up to an hour. A start now counts against the account that makes it,
    its own phone and its address, never the number it names."""
    a_person, _, _ = _signed_in(ident)
    b_person, _, b_token = _signed_in(ident)
    assert _change(ident, b_token, a_person["phone"], "10.11.0.0").status_code == 202
    assert _request(ident, a_person["phone"], ip="10.11.1.0").status_code == 202  # same minute
    starts = []
    for i in range(1, 6):
        clock.tick()
        starts.append(_change(ident, b_token, a_person["phone"], f"10.11.0.{i}").status_code)
    assert 429 in starts  # B has used up its own allowance...
    clock.tick()
    assert _request(ident, a_person["phone"], ip="10.11.1.1",
                    captcha=True).status_code == 202  # ...not A's
    code = _code(ident, a_person["phone"], "login")
    signed_in = ident.call("POST", "/tokens/sms", ip="10.11.1.1",
                           json={"phone": a_person["phone"], "code": code})
    assert signed_in.status_code == 201, signed_in.get_data(as_text=True)
    clock.tick()
    assert _request(ident, a_person["phone"], "reset_password", ip="10.11.1.2",
                    captcha=True).status_code == 202
    reset = ident.call("POST", "/password-resets", ip="10.11.1.2", json={
        "phone": a_person["phone"], "code": _code(ident, a_person["phone"], "reset_password"),
        "new_password": "a-brand-new-secret"})
    assert reset.status_code == 204, reset.get_data(as_text=True)


def test_an_account_starts_at_most_three_phone_changes_an_hour_whatever_the_numbers(
        ident: Identity, clock: _Clock) -> None:
    _, _, token = _signed_in(ident)
    for i in range(3):
        assert _change(ident, token, mobile(), f"10.12.0.{i}").status_code == 202
        if i == 0:
            soon = _change(ident, token, mobile(), "10.12.1.0")  # one a minute
            assert soon.status_code == 429 and soon.headers["Retry-After"] == "60"
        clock.tick()
    fourth = _change(ident, token, mobile(), "10.12.2.0")
    assert fourth.status_code == 429, fourth.get_data(as_text=True)
    assert fourth.content_type == "application/problem+json"
    assert _slug(fourth) == "too-many-requests"
    assert fourth.headers["Retry-After"] == "3417"  # the first start's hour: 3600 - 3 * 61
    assert fourth.get_json()["retry_after"] == 3417
    clock.tick(3417)
    assert _change(ident, token, mobile(), "10.12.2.1").status_code == 202


def test_changes_started_by_one_account_leave_another_s_change_to_the_number_alone(
        ident: Identity, clock: _Clock) -> None:
    """B's starts to a number spent its allowance, and C's change to it was refused (429)
    for up to an hour."""
    number = mobile()
    _, _, b_token = _signed_in(ident)
    c_person, c_account, c_token = _signed_in(ident)
    for i in range(3):
        clock.tick()
        assert _change(ident, b_token, number, f"10.13.0.{i}").status_code == 202
    started = _change(ident, c_token, number, "10.13.1.0")  # the same minute as B's last
    assert started.status_code == 202, started.get_data(as_text=True)
    codes = {"old_code": _code(ident, c_person["phone"], "change_phone_old"),
             "new_code": _code(ident, number, "change_phone_new", c_account["id"])}
    ok = ident.call("POST", "/accounts/me/phone-change/confirm", json=codes, token=c_token,
                    ip="10.13.1.0")
    assert ok.status_code == 200, ok.get_data(as_text=True)
    assert ok.get_json()["id"] == c_account["id"]


_Answer = tuple[int, str | None, str | None, dict[str, Any]]


def _answer(resp: Any) -> _Answer:
    """All an answer tells: status, type, Retry-After and body but its request id."""
    body = {k: v for k, v in resp.get_json().items() if k != "request_id"}
    return resp.status_code, resp.content_type, resp.headers.get("Retry-After"), body


def _starts(identity: Identity, clock: _Clock,
            targets: dict[str, str]) -> dict[str, list[_Answer]]:
    """Four accounts per target start changes to it, minute after minute, each from its own
    address and once more within the minute: every answer (status, type, Retry-After and
    body but its request id) per target, the targets' turns taken at the same moments."""
    starters = {target: [_signed_in(identity)[2] for _ in range(4)] for target in targets}
    answers: dict[str, list[_Answer]] = {target: [] for target in targets}
    for minute in range(5):
        for target, net in targets.items():
            for n, token in enumerate(starters[target]):
                for again in range(2):
                    answers[target].append(_answer(_change(
                        identity, token, target, f"{net}.{n}.{minute * 2 + again}")))
        clock.tick()
    return answers


def test_a_taken_and_a_free_number_get_the_same_answers_under_the_same_limits(
        ident: Identity, clock: _Clock) -> None:
    """Whether a number is registered must not show in what a starter gets: the same
    statuses, bodies and waits, every limit included. A free number gets at most 10 change
    codes an hour, whoever asks; past that the start is answered alike and its code goes to
    nobody, as a taken number's always does."""
    taken, free = ident.register()[0]["phone"], mobile()
    answers = _starts(ident, clock, {taken: "10.14", free: "10.15"})
    assert answers[taken] == answers[free]
    statuses = [status for status, *_ in answers[free]]
    assert statuses.count(202) == 12 and statuses.count(429) == 28  # 4 accounts, 3 each
    assert _sent(ident, free) == 10 and _sent(ident, taken) == 0
    clock.tick(3600)
    _, _, token = _signed_in(ident)
    assert _change(ident, token, free, "10.15.9.9").status_code == 202
    assert _sent(ident, free) == 11


# --- who spends a number's sign-in and reset codes -----------------------------------------

def test_a_stranger_s_requests_leave_the_owner_s_codes_alone(
        ident: Identity, clock: _Clock) -> None:
    """Anyone could ask for codes to anyone's number, and the number's allowance (1 a minute,
    5 an hour) was shared: one request blocked its owner's SMS sign-in and reset for a
    minute, five for an hour. The allowance is now per number and requesting address."""
    owner, account = ident.register()
    for _ in range(5):  # the stranger's hour's worth, from address A
        assert _request(ident, owner["phone"], ip="10.16.0.1", captcha=True).status_code == 202
        clock.tick()
    assert _request(ident, owner["phone"], ip="10.16.0.1", captcha=True).status_code == 429
    sent = _sent(ident, owner["phone"], "login")
    asked = _request(ident, owner["phone"], ip="10.16.1.1", captcha=True)  # the owner, B
    assert asked.status_code == 202, asked.get_data(as_text=True)
    assert _sent(ident, owner["phone"], "login") == sent + 1
    signed_in = ident.call("POST", "/tokens/sms", ip="10.16.1.1", json={
        "phone": owner["phone"], "code": _code(ident, owner["phone"], "login")})
    assert signed_in.status_code == 201, signed_in.get_data(as_text=True)
    clock.tick()
    assert _request(ident, owner["phone"], "reset_password", ip="10.16.1.1",
                    captcha=True).status_code == 202
    assert _sent(ident, owner["phone"], "reset_password") == 1
    assert _events(ident)[-1]["data"]["account_id"] == account["id"]


def test_a_number_gets_at_most_ten_codes_an_hour_whoever_asks(
        ident: Identity, clock: _Clock) -> None:
    """Counted per address, a number could be flooded from many: past 10 codes an hour from
    all addresses together the request is answered alike and nothing is sent (nor is the
    live code replaced)."""
    owner, _ = ident.register()
    answers = [_request(ident, owner["phone"], ip=f"10.17.0.{n}", captcha=True)
               for n in range(12)]
    assert [a.status_code for a in answers] == [202] * 12
    assert {json.dumps(a.get_json()) for a in answers} == {'{"expires_in": 300}'}
    assert _sent(ident, owner["phone"], "login") == 10
    tenth = _code(ident, owner["phone"], "login")
    signed_in = ident.call("POST", "/tokens/sms", ip="10.17.1.0",
                           json={"phone": owner["phone"], "code": tenth})
    assert signed_in.status_code == 201, signed_in.get_data(as_text=True)
    clock.tick(3600)  # the hour passes: codes go out again
    assert _request(ident, owner["phone"], ip="10.17.1.1", captcha=True).status_code == 202
    assert _sent(ident, owner["phone"], "login") == 11


def test_a_captcha_comes_before_an_sms_code_in_production(
        ident: Identity, monkeypatch: pytest.MonkeyPatch) -> None:
    """IDENTITY_REQUIRE_CAPTCHA=1 (production) asked for a captcha before a password only;
    a code could be asked for without one. A refused captcha spends and sends nothing."""
    monkeypatch.setenv("IDENTITY_REQUIRE_CAPTCHA", "1")
    person, _ = ident.register()
    missing = _request(ident, person["phone"], ip="10.18.0.1")  # even the first
    assert missing.status_code == 400 and _slug(missing) == "captcha-required"
    assert missing.content_type == "application/problem+json"
    for captcha in (_captcha(ident, "BBBBB", ip="10.18.0.1"),
                    {"captcha_id": "nope", "captcha_answer": ANSWER}):
        wrong = _request(ident, person["phone"], ip="10.18.0.1", captcha=captcha)
        assert wrong.status_code == 401 and _slug(wrong) == "captcha-invalid"
    with ident.rt.db.transaction() as session:  # nothing spent (but the captchas' own)...
        assert session.scalars(select(SignInRequest.scope)).all() == ["captcha_ip"]
    assert _events(ident) == []  # ...nor sent
    captcha = _captcha(ident, ANSWER.lower(), ip="10.18.0.1")
    ok = _request(ident, person["phone"], ip="10.18.0.1", captcha=captcha)  # the same minute
    assert ok.status_code == 202, ok.get_data(as_text=True)
    assert _sent(ident, person["phone"], "login") == 1
    _forget_requests(ident)
    reused = _request(ident, person["phone"], ip="10.18.0.1", captcha=captcha)
    assert reused.status_code == 401 and _slug(reused) == "captcha-invalid"


def test_a_captcha_comes_after_codes_asked_from_the_address_or_for_the_phone(
        ident: Identity, clock: _Clock) -> None:
    """Without the setting, as for passwords: the first code from a fresh address for a
    fresh number needs no captcha; once a code was asked for from the address, or for the
    number from any address, in the hour, the next needs one, so a flood from many
    addresses costs a captcha per code."""
    phone, other = ident.register()[0]["phone"], mobile()
    assert _request(ident, phone, ip="10.19.0.1").status_code == 202
    clock.tick()
    for number, ip in ((other, "10.19.0.1"), (phone, "10.19.0.2")):  # the address; the phone
        asked = _request(ident, number, ip=ip)
        assert asked.status_code == 400 and _slug(asked) == "captcha-required", (number, ip)
    assert _request(ident, other, ip="10.19.0.2", captcha=True).status_code == 202
    assert _request(ident, mobile(), ip="10.19.0.3").status_code == 202  # fresh: none
    soon = _request(ident, phone, ip="10.19.0.1")  # within the minute: 429, no captcha first
    assert _request(ident, phone, ip="10.19.0.1", captcha=True).status_code == 202
    soon = _request(ident, phone, ip="10.19.0.1")
    assert soon.status_code == 429 and _slug(soon) == "too-many-requests"
    clock.tick(3600)  # the hour passes
    assert _request(ident, phone, ip="10.19.0.1").status_code == 202
    ident.rt.extras["captcha_after_failure"] = False  # IDENTITY_CAPTCHA_AFTER_FAILURE=0
    clock.tick()
    assert _request(ident, phone, ip="10.19.0.1").status_code == 202


def _codes_asked(identity: Identity, clock: _Clock,
                 targets: dict[str, str]) -> dict[str, list[_Answer]]:
    """Three addresses per target ask for codes to it, minute after minute: without a
    captcha, with a wrong one, with a right one, and again within the minute; every answer
    (status, type, Retry-After and body but its request id) per target, the targets' turns
    taken at the same moments."""
    answers: dict[str, list[_Answer]] = {target: [] for target in targets}
    for _ in range(6):
        for target, net in targets.items():
            for n in range(3):
                ip = f"{net}.{n}.1"
                for captcha in (False, _captcha(identity, "BBBBB", ip=ip), True, True):
                    answers[target].append(_answer(_request(identity, target, ip=ip,
                                                            captcha=captcha)))
        clock.tick()
    return answers


def test_a_taken_and_a_free_number_get_the_same_code_answers_under_every_rule(
        ident: Identity, clock: _Clock) -> None:
    """Whether a number has an account must not show in what asking for its codes answers:
    the captcha's demands and refusals, each allowance (per number and address, per
    address) and the quiet cap of 10 codes an hour alike."""
    taken, free = ident.register()[0]["phone"], mobile()
    answers = _codes_asked(ident, clock, {taken: "10.20", free: "10.21"})
    assert answers[taken] == answers[free]
    statuses = [status for status, *_ in answers[free]]
    assert statuses.count(202) == 15  # 3 addresses, 5 an hour each
    # every ask without one wants a captcha but the very first, and those in the sixth
    # minute: the address's allowance for the number is spent, so they are 429 at once
    assert statuses.count(400) == 3 * 5 - 1
    assert statuses.count(401) == 3 * 6  # every wrong captcha refused
    assert statuses.count(429) == 3 * 6 * 4 - 15 - 14 - 18
    assert _sent(ident, taken, "login") == 10 and _sent(ident, free, "login") == 0


# --- QR sign-in ---------------------------------------------------------------------------

POLL_SECRET = "X-QR-Poll-Secret"  # noqa: S105 - a header's name


def _poll(identity: Identity, created: dict[str, Any], secret: str | None = None) -> Any:
    """The web's poll of a ticket, with its poll secret (or ``secret`` instead)."""
    return identity.call("GET", f"/qr-tickets/{created['ticket']}", headers={
        POLL_SECRET: created["poll_secret"] if secret is None else secret})


def test_qr_pending_confirm_tokens_once_then_consumed(ident: Identity) -> None:
    person, account = ident.register()
    mobile_token = ident.tokens(person["phone"])["access_token"]
    created = ident.call("POST", "/qr-tickets")
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    body = created.get_json()
    ticket = body["ticket"]
    assert body["qr_payload"] == f"ecourt-login:{ticket}" and body["expires_in"] == 120
    assert len(base64.urlsafe_b64decode(ticket + "==")) >= 16
    assert len(base64.urlsafe_b64decode(body["poll_secret"] + "==")) >= 16
    assert body["poll_secret"] not in body["qr_payload"]
    with ident.rt.db.transaction() as session:
        stored = session.execute(select(QrTicket.ticket_hash, QrTicket.poll_hash)).one()
        assert ticket not in stored and body["poll_secret"] not in stored
    assert _poll(ident, body).get_json()["status"] == "pending"
    assert ident.call("POST", f"/qr-tickets/{ticket}/confirm").status_code == 401
    confirm = ident.call("POST", f"/qr-tickets/{ticket}/confirm", token=mobile_token)
    assert confirm.status_code == 204, confirm.get_data(as_text=True)
    assert ident.call("POST", f"/qr-tickets/{ticket}/confirm",
                      token=mobile_token).status_code == 409
    first = _poll(ident, body).get_json()
    assert first["status"] == "confirmed" and first["access_token"]
    me = ident.call("GET", "/accounts/me", token=first["access_token"]).get_json()
    assert me["id"] == account["id"]
    second = _poll(ident, body).get_json()
    assert second == {"status": "consumed"}
    unknown = _poll(ident, {"ticket": "x" * 43, "poll_secret": body["poll_secret"]})
    assert unknown.status_code == 404


def test_a_password_reset_ends_a_qr_sign_in_confirmed_and_not_yet_collected(
        ident: Identity) -> None:
    """The phone confirmed a browser's ticket, then the password was reset (it ends every
    sign-in): the browser's next poll gets no tokens (it got a session that outlived the
    reset)."""
    person, _ = ident.register()
    mobile_token = ident.tokens(person["phone"])["access_token"]
    body = ident.call("POST", "/qr-tickets").get_json()
    assert ident.call("POST", f"/qr-tickets/{body['ticket']}/confirm",
                      token=mobile_token).status_code == 204
    assert _request(ident, person["phone"], "reset_password").status_code == 202
    reset = ident.call("POST", "/password-resets", json={
        "phone": person["phone"], "new_password": "a-brand-new-secret",
        "code": _code(ident, person["phone"], "reset_password")})
    assert reset.status_code == 204, reset.get_data(as_text=True)
    assert _poll(ident, body).get_json() == {"status": "expired"}


def test_qr_poll_without_the_poll_secret_is_an_unknown_ticket(ident: Identity) -> None:
    """Whoever sees the QR code knows the ticket: polling with it alone, or with a wrong
    secret, is answered as an unknown ticket and never gets the tokens."""
    person, account = ident.register()
    mobile_token = ident.tokens(person["phone"])["access_token"]
    body = ident.call("POST", "/qr-tickets").get_json()
    other = ident.call("POST", "/qr-tickets").get_json()
    unknown = ident.call("GET", "/qr-tickets/" + "x" * 43).get_json()

    def thief_polls() -> None:
        answers = [ident.call("GET", f"/qr-tickets/{body['ticket']}"),
                   _poll(ident, body, secret=""),
                   _poll(ident, body, secret=body["ticket"]),
                   _poll(ident, body, secret=other["poll_secret"]),
                   _poll(ident, body, secret=body["poll_secret"] + "x")]
        for answer in answers:
            assert answer.status_code == 404 and answer.get_json() == {
                **unknown, "instance": answer.get_json()["instance"],
                "request_id": answer.get_json()["request_id"]}

    thief_polls()
    assert ident.call("POST", f"/qr-tickets/{body['ticket']}/confirm",
                      token=mobile_token).status_code == 204
    thief_polls()  # confirmed: still nothing, and the ticket is not used up
    web = _poll(ident, body).get_json()
    assert web["status"] == "confirmed"
    me = ident.call("GET", "/accounts/me", token=web["access_token"]).get_json()
    assert me["id"] == account["id"]


def test_qr_ticket_expires_unconfirmed(ident: Identity) -> None:
    person, _ = ident.register()
    token = ident.tokens(person["phone"])["access_token"]
    created = ident.call("POST", "/qr-tickets").get_json()
    for _ in range(3):
        assert _poll(ident, created).get_json()["status"] == "pending"
    _age(ident, QrTicket, 121)
    assert _poll(ident, created).get_json() == {"status": "expired"}
    assert ident.call("POST", f"/qr-tickets/{created['ticket']}/confirm",
                      token=token).status_code == 410


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_qr_poll_with_nothing_to_hand_out_answers_while_another_connection_holds_the_write_lock(
        ident: Identity) -> None:
    """The web polls every second or two, nearly always to hear "pending": such a poll (and
    an unknown ticket's, and a used one's) reads without SQLite's write lock, so it neither
    waits for identity's writes nor holds them up. The poll that collects the tokens writes."""
    person, _ = ident.register()
    mobile_token = ident.tokens(person["phone"])["access_token"]
    created = ident.call("POST", "/qr-tickets").get_json()
    url = ident.rt.db.url
    pending = answered_while_writing(url, lambda: _poll(ident, created))
    assert pending.status_code == 200 and pending.get_json()["status"] == "pending"
    assert answered_while_writing(url, lambda: _poll(ident, created, secret="x")).status_code \
        == 404
    assert ident.call("POST", f"/qr-tickets/{created['ticket']}/confirm",
                      token=mobile_token).status_code == 204
    assert _poll(ident, created).get_json()["status"] == "confirmed"
    assert answered_while_writing(url, lambda: _poll(ident, created)).get_json() == {
        "status": "consumed"}


def test_two_polls_racing_for_a_confirmed_qr_ticket_get_its_tokens_once(
        ident: Identity, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both polls find the ticket confirmed in their reading look before either writes; in
    its writing transaction each looks again (on SQLite the second waits for the first's
    write lock, then sees the ticket consumed) and claims it with a conditional UPDATE (on
    PostgreSQL the second's waits for the first's row lock, then finds nothing to claim):
    only one of them gets tokens."""
    person, account = ident.register()
    mobile_token = ident.tokens(person["phone"])["access_token"]
    created = ident.call("POST", "/qr-tickets").get_json()
    assert ident.call("POST", f"/qr-tickets/{created['ticket']}/confirm",
                      token=mobile_token).status_code == 204
    both_looked, looks = threading.Barrier(2, timeout=30), threading.local()
    unredeemed = signin_qr._unredeemed

    def looking(*args: Any) -> Any:
        answer = unredeemed(*args)
        looks.count = getattr(looks, "count", 0) + 1
        if looks.count == 1:  # this thread's reading look: wait for the other's
            both_looked.wait()
        return answer

    monkeypatch.setattr(signin_qr, "_unredeemed", looking)
    answers: list[Any] = []
    polls = [threading.Thread(target=lambda: answers.append(_poll(ident, created)))
             for _ in range(2)]
    for thread in polls:
        thread.start()
    for thread in polls:
        thread.join(timeout=60)
    bodies = sorted((answer.get_json() for answer in answers), key=lambda body: body["status"])
    assert [body["status"] for body in bodies] == ["confirmed", "consumed"], bodies
    assert bodies[1] == {"status": "consumed"}
    me = ident.call("GET", "/accounts/me", token=bodies[0]["access_token"]).get_json()
    assert me["id"] == account["id"]


def test_qr_tickets_are_throttled_per_client_address(ident: Identity) -> None:
    for _ in range(30):
        assert ident.call("POST", "/qr-tickets", ip="10.3.0.1").status_code == 201
    assert ident.call("POST", "/qr-tickets", ip="10.3.0.1").status_code == 429
    assert ident.call("POST", "/qr-tickets", ip="10.3.0.2").status_code == 201


# --- no code or phone in clear ------------------------------------------------------------

def test_no_code_or_phone_in_clear_anywhere(ident: Identity,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    person, _ = ident.register()
    answers = [_request(ident, person["phone"])]
    code = _code(ident, person["phone"], "login")
    answers.append(ident.call("POST", "/tokens/sms", json={"phone": person["phone"],
                                                           "code": "000000"}))
    answers.append(ident.call("POST", "/tokens/sms", json={"phone": person["phone"],
                                                           "code": code}))
    token = answers[-1].get_json()["access_token"]
    new_phone = mobile()
    _forget_requests(ident)
    answers.append(ident.call("POST", "/accounts/me/phone-change",
                              json={"new_phone": new_phone}, token=token))
    old_code = _code(ident, person["phone"], "change_phone_old")
    new_code = _code(ident, new_phone, "change_phone_new")
    answers.append(ident.call("POST", "/accounts/me/phone-change/confirm",
                              json={"old_code": old_code, "new_code": new_code}, token=token))
    _forget_requests(ident)
    answers.append(_request(ident, new_phone, "reset_password"))
    reset = _code(ident, new_phone, "reset_password")
    answers.append(ident.call("POST", "/password-resets", json={
        "phone": new_phone, "code": reset, "new_password": "another-good-secret"}))
    answers.append(ident.call("POST", "/captchas"))

    with ident.rt.db.transaction() as session:
        rows = [" ".join(str(v) for v in row) for row in session.execute(select(outbox)).all()]
        stored = [" ".join(str(v) for v in row) for model in (SignInCode, SignInRequest)
                  for row in session.execute(select(model.__table__)).all()]
    texts = rows + stored + [a.get_data(as_text=True) for a in answers]
    texts += [r.getMessage() + " " + " ".join(str(v) for v in vars(r).values())
              for r in caplog.records]
    secrets = {person["phone"], new_phone, code, old_code, new_code, reset}
    for text in texts:
        for secret in secrets:
            assert secret not in text
        assert not _MOBILE.search(text), text
    for row in rows:
        assert not re.search(r"(?<![\w.:-])\d{6}(?![\w-])", row), row
