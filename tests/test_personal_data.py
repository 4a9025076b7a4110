"""No ID-card number, mobile number or password in clear in any log line, event or API
response (RELIABILITY S6): real traffic through the gateway, then everything is scanned.

Registration carries them in fields made for them; staff and parties also type them into free
text (a rejection reason, a review note, a law firm's name), which travels on in events, in the
SMS texts built from them and in the portal inbox: those copies are masked too. The owner's own
authorized view (the application, binding, organization or verification as its parties and
the reviewing court read it through the API) keeps the text as typed."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.test import Client

from ecourt.embedded import Suite
from servicekit.logs import mask_id_number, mask_phone
from servicekit.tables import outbox
from servicekit.testing import wait_for
from services.delivery.models import Notification
from services.notifier.models import SmsMessage
from tests.factories import id_number, individual, mobile, uscc
from tests.harness import PDF, Court, bearer, file, login, sms_for, tokens
from tests.harness import person as signed_up

ID_NUMBER = re.compile(r"(?<![0-9])\d{6}[ -]?\d{8}[ -]?\d{3}[\dXx](?![0-9])")
MOBILE = re.compile(r"(?<![0-9])1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?![0-9])")
#: values that are never personal data but can hold such a run of digits by chance (a UUID's
#: last group, a sealed value's base64, a digest): taken out of a text before it is scanned
OPAQUE = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
                    r"|gAAAAA[A-Za-z0-9_=-]+|[0-9a-f]{64}")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 256


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
    _assert_clean(secrets, ("log", captured.lines), ("event", events), ("response", answers))


def _assert_clean(secrets: list[str], *places: tuple[str, list[str]]) -> None:
    for where, texts in places:
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"{where} carries personal data in clear: {text[:300]}"
            scanned = OPAQUE.sub("", text)
            assert not ID_NUMBER.search(scanned), f"{where} carries an ID number: {text[:300]}"
            assert not MOBILE.search(scanned), f"{where} carries a mobile number: {text[:300]}"


def _ok(resp: Any, *codes: int) -> dict[str, Any]:
    assert resp.status_code in (codes or (200,)), resp.get_data(as_text=True)
    return resp.get_json()


def _if_match(http: Client, url: str, token: str) -> dict[str, str]:
    """The caller's token and the ETag of the resource as just read (update and review
    routes ask for If-Match)."""
    read = http.get(url, headers=bearer(token))
    assert read.status_code == 200, read.get_data(as_text=True)
    return {**bearer(token), "If-Match": read.headers["ETag"]}


def test_numbers_typed_into_free_text_are_masked_in_logs_events_sms_and_inbox(
        suite: Suite, captured: Capture) -> None:
    """A clerk, a judge, a reviewer and a party type an ID number and a mobile into reasons,
    notes and a law firm's name: every event, SMS text, inbox notice and log line that carries
    that text carries it masked."""
    http = Client(suite.gateway)
    typed_id, typed_phone, other = id_number(), mobile(), mobile()
    grouped = f"{other[:3]}-{other[3:7]}-{other[7:]}"  # as people type it too
    typed = f"身份证号{typed_id}与登记不符，请联系{typed_phone}或{grouped}"
    masked = (f"身份证号{mask_id_number(typed_id)}与登记不符，请联系{mask_phone(typed_phone)}"
              f"或{other[:3]}-****-{other[7:]}")
    court = Court(suite, http, "粤09", "测试市中级人民法院")
    reviewer = court.token("registry_reviewer")

    # an application: the party's reason and use, the specialist's note, the judge's note
    party_id, party = signed_up(http, "周俊雄")
    case_id = court.case([("周俊雄", "plaintiff", party_id)], effective=None)
    app = _ok(http.post(f"/api/matters/cases/{case_id}/applications", headers=bearer(party),
                        json={"kind": "effectiveness_certificate", "reason": typed,
                              "use": typed, "materials": ["判决书.pdf"]}), 201)
    url = f"/api/matters/applications/{app['id']}"
    _ok(http.post(f"{url}/review", headers=_if_match(http, url, court.token("specialist")),
                  json={"needs_judge": True, "note": typed}))
    _ok(http.post(f"{url}/judge-decision", headers=_if_match(http, url, court.token("judge")),
                  json={"opinion": "接收", "result_note": typed, "handler_name": "承办法官",
                        "decided_on": "2021-08-13", "effective_date": "2021-08-13"}))

    # an organization's registration, rejected with the reason
    applicant_id, applicant = signed_up(http, "吴经理")
    org = _ok(http.post("/api/identity/organizations", headers=bearer(applicant), data={
        "name": "广州虚构科技有限公司", "uscc": uscc(), "legal_representative": "吴经理",
        "court": court.code, "password": "org-password-123",
        "licence": file(PNG, "licence.png", "image/png")}), 201)
    org_url = f"/api/identity/organizations/{org['id']}"
    _ok(http.post(f"{org_url}/reject", headers=_if_match(http, org_url, reviewer),
                  json={"reason": typed}))

    # a lawyer's offline verification (the law firm typed with a mobile in it), rejected
    lawyer = individual(name="李四")
    lawyer_id = _ok(http.post("/api/identity/accounts", json=lawyer), 201)["id"]
    applied = _ok(http.post("/api/identity/lawyer-verifications",
                            headers=bearer(login(http, lawyer["phone"], lawyer["password"])),
                            data={"method": "offline", "court": court.code,
                                  "license_no": "11101201510000003",
                                  "law_firm": f"北京虚构律师事务所（{typed_phone}）",
                                  "certificate": file(PNG, "执业证.png", "image/png"),
                                  "id_card": file(PNG, "身份证.png", "image/png")}),
                  200, 201, 202)
    wait_for(lambda: _sms_of(suite, court.id("registry_reviewer"),
                             "lawyer_verification_requested", "李四"),
             message="the reviewer's SMS")
    verification_url = f"/api/identity/lawyer-verifications/{applied['id']}"
    _ok(http.post(f"{verification_url}/reject",
                  headers=_if_match(http, verification_url, reviewer), json={"reason": typed}))

    # a binding request, rejected by the judge with the reason
    verified = individual(name="王律师")
    verified_id = _ok(http.post("/api/identity/accounts", json=verified), 201)["id"]
    _ok(http.post("/api/identity/lawyer-verifications",
                  headers=bearer(login(http, verified["phone"], verified["password"])),
                  json={"method": "online", "license_no": "14401201810000001",
                        "law_firm": "广东示例律师事务所"}), 200, 201)
    wait_for(lambda: sms_for(suite, verified_id, "lawyer_verified"), message="verified")
    counsel = login(http, verified["phone"], verified["password"])  # the role is in new tokens
    case_number = _ok(http.get(f"/api/matters/cases/{case_id}",
                               headers=bearer(party)))["case_number"]
    binding = wait_for(lambda: (r := http.post("/api/matters/bindings", headers=bearer(counsel),
                                               data={"case_number": case_number,
                                                     "party_name": "周俊雄",
                                                     "letter": file(PDF, "委托书.pdf",
                                                                     "application/pdf")}))
                       .status_code == 201 and r.get_json(),
                       message="matters to learn of the lawyer")
    url = f"/api/matters/bindings/{binding['id']}"
    _ok(http.post(f"{url}/reject", headers=_if_match(http, url, court.token("judge")),
                  json={"reason": typed}))

    told = [(applicant_id, "organization_rejected"), (lawyer_id, "lawyer_rejected"),
            (verified_id, "binding_rejected")]
    for account_id, template in told:
        [sms] = wait_for(lambda a=account_id, t=template: sms_for(suite, a, t),
                         message=f"the {template} SMS")
        assert masked in sms.text, sms.text  # the reason is there, masked
    reviewer_sms = _sms_of(suite, court.id("registry_reviewer"),
                           "lawyer_verification_requested", "李四")
    assert reviewer_sms and mask_phone(typed_phone) in reviewer_sms[0].text

    # the owner's own authorized view keeps the text as typed
    assert _ok(http.get(url, headers=bearer(counsel)))["reason"] == typed

    events = [body for rt in suite.runtimes.values() for body in _outbox_bodies(rt.db)]
    assert any(masked in json.loads(body)["data"].get("reason", "") for body in events)
    _assert_clean([typed_id, typed_phone, grouped], ("log", captured.lines), ("event", events),
                  ("sms", _sms_texts(suite)), ("inbox", _inbox_texts(suite)))


def _outbox_bodies(db: Any) -> list[str]:
    with db.transaction() as s:
        return list(s.scalars(select(outbox.c.body)))


def _sms_of(suite: Suite, account_id: str, template: str, needle: str) -> list[SmsMessage]:
    return [m for m in sms_for(suite, account_id, template) if needle in m.text]


def _texts(suite: Suite, service: str, query: Callable[[], Any]) -> list[str]:
    with suite.runtimes[service].db.transaction() as s:
        return [" ".join(map(str, row)) for row in s.execute(query())]


def _sms_texts(suite: Suite) -> list[str]:
    return _texts(suite, "notifier", lambda: select(SmsMessage.phone_masked, SmsMessage.text))


def _inbox_texts(suite: Suite) -> list[str]:
    return _texts(suite, "delivery", lambda: select(Notification.title, Notification.body))


def _sms_sent(suite: Suite, phone: str) -> bool:
    masked = phone[:3] + "****" + phone[-4:]
    with suite.runtimes["notifier"].db.transaction() as s:
        return bool(s.scalar(select(SmsMessage.event_id).where(
            SmsMessage.phone_masked == masked)))
