"""Driving the whole suite through the gateway as people would: courts with their staff,
parties, sign-ins, and what the notifier was asked to send."""

from __future__ import annotations

import io
from typing import Any

from sqlalchemy import select
from werkzeug.test import Client

from ecourt.embedded import Suite
from servicekit.testing import unique, wait_for
from services.notifier.models import SmsMessage
from tests.factories import individual, mobile

CAPTCHA_ANSWER = "KKKKK"  # tests/conftest.py gives every suite a captcha drawing only K
PASSWORD = "correct-horse-battery"


class Court:
    """One court's people, signed in through the gateway."""

    def __init__(self, suite: Suite, http: Client, code: str, name: str) -> None:
        self.code, self.name, self.http = code, name, http
        admin_phone = mobile()
        from services.identity.usecases.staff import create_admin

        create_admin(suite.runtimes["identity"].db, court=code, court_name=name,
                        name="管理员", phone=admin_phone, password=PASSWORD)
        self.admin = login(http, admin_phone)
        self.staff: dict[str, tuple[str, str]] = {}
        for role, department in (("specialist", "立案庭"), ("registry_reviewer", "立案庭"),
                                 ("judge", "民一庭"),
                                 ("clerk", "民一庭"), ("division_head", "民一庭"),
                                 ("president", "院领导")):
            phone = mobile()
            resp = http.post("/api/identity/staff", headers=bearer(self.admin), json={
                "name": f"{role}-{code}", "phone": phone, "password": PASSWORD, "court": code,
                "department": department, "roles": [role]})
            assert resp.status_code == 201, resp.get_data(as_text=True)
            self.staff[role] = (resp.get_json()["id"], login(http, phone))

    def token(self, role: str) -> str:
        return self.staff[role][1]

    def id(self, role: str) -> str:
        return self.staff[role][0]

    def register_seal(self) -> None:
        headers = bearer(self.admin)
        current = self.http.get(f"/api/documents/seals/{self.code}", headers=headers)
        if current.status_code == 200:  # replacing it: as read
            headers["If-Match"] = current.headers["ETag"]
        resp = self.http.post("/api/documents/seals", headers=headers, json={
            "court": self.code, "court_name": self.name, "seal_name": f"{self.name}诉讼服务专用章"})
        assert resp.status_code in (200, 201), resp.get_data(as_text=True)

    def case_body(self, parties: list[tuple[str, str, str | None]],
                  effective: str | None = None) -> dict[str, Any]:
        """What the trial system sends for a new case of this court's judge and clerk."""
        body: dict[str, Any] = {
            "case_number": f"(2021){self.code}民初{unique('n')[-6:].translate(DIGITS)}号",
            "court": self.code, "court_name": self.name, "cause": "买卖合同纠纷",
            "department": "民一庭", "judge_account_id": self.id("judge"),
            "clerk_account_id": self.id("clerk"),
            "judgment": {"title": "民事判决书", "decided_on": "2021-06-01"},
            "parties": [{"name": n, "role": r, "account_id": a} for n, r, a in parties]}
        if effective:
            body["effective_date"] = effective
        return body

    def case(self, parties: list[tuple[str, str, str | None]], effective: str | None) -> str:
        body = self.case_body(parties, effective)
        resp = self.http.post("/api/matters/cases", headers=bearer(self.token("specialist")),
                              json=body)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        return resp.get_json()["id"]


DIGITS = str.maketrans("abcdef", "123456")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(http: Client, phone: str, password: str = PASSWORD) -> str:
    return tokens(http, phone, password)["access_token"]


def tokens(http: Client, username: str, password: str = PASSWORD) -> dict[str, Any]:
    """Sign in, answering the image captcha when identity asks for one (after a failure from
    this client); the test suites' captcha service always draws ``CAPTCHA_ANSWER``."""
    body = {"username": username, "password": password}
    resp = http.post("/api/identity/tokens", json=body)
    if resp.status_code == 400 and resp.get_json()["type"].endswith("/captcha-required"):
        captcha = http.post("/api/identity/captchas").get_json()
        resp = http.post("/api/identity/tokens", json=dict(
            body, captcha_id=captcha["captcha_id"], captcha_answer=CAPTCHA_ANSWER))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def person(http: Client, name: str) -> tuple[str, str]:
    body = individual(name=name)
    resp = http.post("/api/identity/accounts", json=body)
    assert resp.status_code == 201
    return resp.get_json()["id"], login(http, body["phone"], body["password"])


def sms_for(suite: Suite, account_id: str, template: str) -> list[SmsMessage]:
    with suite.runtimes["notifier"].db.transaction() as s:
        return list(s.scalars(select(SmsMessage).where(SmsMessage.account_id == account_id,
                                                       SmsMessage.template == template)))


PDF = b"%PDF-1.7\n%letter of authorisation\n" + b"x" * 256


def file(data: bytes, name: str, ctype: str) -> tuple[io.BytesIO, str, str]:
    """One upload for a werkzeug test client's multipart body."""
    return io.BytesIO(data), name, ctype


def online_lawyer(suite: Suite, http: Client, name: str = "王律师") -> tuple[str, str]:
    """A new individual verified as a lawyer online: (account id, a token with the role)."""
    body = individual(name=name)
    account_id = http.post("/api/identity/accounts", json=body).get_json()["id"]
    token = login(http, body["phone"], body["password"])
    verified = http.post("/api/identity/lawyer-verifications", headers=bearer(token), json={
        "method": "online", "license_no": "14401201810000001", "law_firm": "广东示例律师事务所"})
    assert verified.status_code in (200, 201), verified.get_data(as_text=True)
    wait_for(lambda: sms_for(suite, account_id, "lawyer_verified"), message="the lawyer's SMS")
    return account_id, login(http, body["phone"], body["password"])  # the role is in new tokens


def matters_knows_lawyer(suite: Suite, account_id: str) -> bool:
    """Whether matters has its copy of the lawyer yet (it learns of them from an event)."""
    from services.matters.models import Lawyer

    with suite.runtimes["matters"].db.transaction() as s:
        return s.get(Lawyer, account_id) is not None
