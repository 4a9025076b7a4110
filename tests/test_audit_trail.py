"""What the services write to their audit trails, driven through the gateway in both tiers:
state changes with who, when, where from and the request, refusals (a role refused, someone
else's case hidden behind a 404, a wrong password), sign-ins; the relays seal every trail and
every chain verifies; no ID number or mobile number reaches a trail in clear. (The trail's own
guarantees, append-only and tamper-evident, are in ``servicekit/tests/test_audit.py``.)"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.test import Client

from ecourt import registry
from ecourt.embedded import Suite
from servicekit import audit
from servicekit.tables import audit_trail, inbox
from servicekit.testing import wait_for
from tests.factories import individual
from tests.harness import Court, bearer, login, person, tokens

ID_NUMBER = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")
MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HEX_HASH = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


@pytest.fixture(scope="module")
def court(suite: Suite) -> Court:
    return Court(suite, Client(suite.gateway), "粤03", "深圳市中级人民法院")


def trail(suite: Suite, service: str, **where: str) -> list[Any]:
    query = select(audit_trail).order_by(audit_trail.c.id)
    for column, value in where.items():
        query = query.where(audit_trail.c[column] == value)
    with suite.runtimes[service].db.transaction() as session:
        return list(session.execute(query))


def test_a_case_filed_by_staff_is_recorded_with_who_where_and_the_request(
        suite: Suite, court: Court) -> None:
    party_id, _ = person(court.http, "林一")
    case_id = court.case([("林一", "plaintiff", party_id), ("某公司", "defendant", None)],
                         "2021-07-01")
    rows = trail(suite, "matters", request_id=trail(
        suite, "matters", subject=f"case:{case_id}")[0].request_id)
    assert sorted(r.action for r in rows) == ["case.created", "case_party.created",
                                              "case_party.created"]
    created = next(r for r in rows if r.action == "case.created")
    assert created.actor == court.id("specialist") and created.roles == "specialist"
    assert created.outcome == audit.DONE and created.request_id
    assert json.loads(created.detail)["court"] == court.code
    parties = {json.loads(r.detail)["role"]: json.loads(r.detail)["account_id"]
               for r in rows if r.action == "case_party.created"}
    assert parties == {"plaintiff": party_id, "defendant": None}
    assert "林一" not in "".join(r.detail for r in rows)  # names are not values it keeps


def test_a_change_made_by_a_consumer_names_the_event_and_the_request_behind_it(
        suite: Suite, court: Court) -> None:
    """Registering an account makes delivery's consumer file a welcome notice: that entry is
    the system's, carries the registration's request id (the event's correlation id) and the
    id of the event it handled."""
    resp = court.http.post("/api/identity/accounts", json=individual(name="卫八"))
    assert resp.status_code == 201
    account_id, request_id = resp.get_json()["id"], resp.headers["X-Request-ID"]
    registered = trail(suite, "identity", subject=f"account:{account_id}")[0]
    assert (registered.action, registered.request_id) == ("account.created", request_id)
    notice = wait_for(lambda: [r for r in trail(suite, "delivery", request_id=request_id)
                               if r.action == "delivery.created"], message="the notice")[0]
    assert notice.actor == "system" and json.loads(notice.detail)["account_id"] == account_id
    with suite.runtimes["delivery"].db.transaction() as session:
        handled = session.execute(select(inbox.c.event_id).where(
            inbox.c.event_id == json.loads(notice.detail)["cause"])).scalar()
    assert handled  # the cause is the event delivery's inbox recorded


def test_someone_elses_case_is_a_404_and_a_recorded_denial(suite: Suite, court: Court) -> None:
    owner_id, _ = person(court.http, "陈二")
    case_id = court.case([("陈二", "plaintiff", owner_id)], "2021-07-01")
    stranger_id, stranger = person(court.http, "路人")
    resp = court.http.get(f"/api/matters/cases/{case_id}", headers=bearer(stranger),
                          environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert resp.status_code == 404
    denied = trail(suite, "matters", subject=f"case:{case_id}", outcome=audit.DENIED)
    assert len(denied) == 1
    entry = denied[0]
    assert (entry.actor, entry.action, entry.source) == (stranger_id, "access.denied",
                                                         "198.51.100.7")
    assert entry.request_id == resp.headers["X-Request-ID"]
    assert json.loads(entry.detail) == {"method": "GET", "problem": "not-found", "status": 404,
                                        "route": "/cases/<case_id>"}
    missing = court.http.get("/api/matters/cases/no-such-case", headers=bearer(stranger))
    assert missing.status_code == 404  # nothing to hide: not a decision about anything
    assert not trail(suite, "matters", request_id=missing.headers["X-Request-ID"])


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_access_granted_to_a_signed_in_caller_is_one_log_line(suite: Suite,
                                                              court: Court) -> None:
    """Reads change nothing and are not written to the database: each grant is a JSON log
    line naming who, from where, the route and the objects, joined to any entries of the
    same request by its id."""
    owner_id, owner = person(court.http, "褚七")
    case_id = court.case([("褚七", "plaintiff", owner_id)], "2021-07-01")
    lines, logger = _Lines(), logging.getLogger("servicekit.audit.grants")
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        resp = court.http.get(f"/api/matters/cases/{case_id}", headers=bearer(owner),
                              environ_base={"REMOTE_ADDR": "198.51.100.8"})
        staff = court.http.get(f"/api/matters/cases/{case_id}",
                                headers=bearer(court.token("judge")))
        public = court.http.get("/api/matters/healthz")
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    assert resp.status_code == 200 and staff.status_code == 200 and public.status_code == 200
    mine = [r for r in lines.records if r.actor == owner_id]
    assert [(r.decision, r.method, r.route, r.objects, r.client_ip, r.status) for r in mine] \
        == [("access.granted", "GET", "/cases/<case_id>", {"case_id": case_id},
             "198.51.100.8", 200)]
    assert {r.actor for r in lines.records} == {owner_id, court.id("judge")}  # not healthz


def test_granted_reads_are_chained_lines_verify_log_checks(
        suite: Suite, court: Court, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A granted read is an authorization decision, and the trail must be tamper-evident
    (RELIABILITY, Audit): the JSON lines are hash-chained per process, and ``ecourt audit
    verify-log`` finds one changed or removed (failed before: plain lines, nothing to check)."""
    import io
    import subprocess
    import sys

    from servicekit import web
    from servicekit.chain import LogChain
    from servicekit.logs import json_handler

    monkeypatch.setattr(web, "GRANTS_CHAIN", LogChain("grants"))  # this test's lines alone
    owner_id, owner = person(court.http, "韩九")
    case_id = court.case([("韩九", "plaintiff", owner_id)], "2021-07-01")
    out, logger = io.StringIO(), logging.getLogger("servicekit.audit.grants")
    handler = json_handler("matters", out)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        for _ in range(3):
            got = court.http.get(f"/api/matters/cases/{case_id}", headers=bearer(owner))
            assert got.status_code == 200
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [json.loads(raw) for raw in out.getvalue().splitlines()]
    assert [(x["decision"], x["actor"], x["seq"]) for x in lines] == [
        ("access.granted", owner_id, seq) for seq in (1, 2, 3)]

    def verify(kept: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "matters.log"
        path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in kept) + "\n",
                        encoding="utf-8")
        return subprocess.run([sys.executable, "-m", "ecourt.cli", "audit", "verify-log",
                               str(path)], capture_output=True, text=True, timeout=120,
                              check=False)

    assert verify(lines).returncode == 0
    altered = [dict(x) for x in lines]
    altered[1]["actor"] = "someone-else"
    assert verify(altered).returncode == 1
    dropped = [dict(x) for x in lines]
    del dropped[1]["objects"]  # a field taken out breaks the line as one changed
    assert verify(dropped).returncode == 1
    assert verify(lines[:1] + lines[2:]).returncode == 1


def test_a_route_refused_to_a_role_is_a_recorded_denial(suite: Suite, court: Court) -> None:
    party_id, party = person(court.http, "吴三")
    resp = court.http.post("/api/matters/cases", headers=bearer(party), json={})
    assert resp.status_code == 403
    entry, = trail(suite, "matters", request_id=resp.headers["X-Request-ID"])
    assert (entry.actor, entry.roles, entry.action, entry.subject, entry.outcome) == (
        party_id, "party", "access.denied", "route:POST /cases", audit.DENIED)


def test_sign_ins_sign_outs_and_wrong_passwords_are_recorded_against_the_account(
        suite: Suite, court: Court) -> None:
    body = individual(name="郑四")
    account_id = court.http.post("/api/identity/accounts", json=body).get_json()["id"]
    pair = tokens(court.http, body["phone"], body["password"])
    wrong = court.http.post("/api/identity/tokens", json={"username": body["phone"],
                                                          "password": "not-the-password"})
    assert wrong.status_code == 401
    out = court.http.post("/api/identity/tokens/revoke",
                          json={"refresh_token": pair["refresh_token"]})
    assert out.status_code == 204
    rows = trail(suite, "identity", subject=f"account:{account_id}")
    assert [(r.action, r.outcome) for r in rows] == [
        ("account.created", audit.DONE), ("auth.signed-in", audit.DONE),
        ("auth.rejected", audit.DENIED), ("auth.signed-out", audit.DONE)]
    assert json.loads(rows[1].detail)["method"] == "password"
    assert rows[2].actor == "anonymous"
    assert json.loads(rows[2].detail)["problem"] == "invalid-credentials"
    assert json.loads(rows[3].detail)["session"] == json.loads(rows[1].detail)["session"]


def test_the_relays_seal_every_trail_and_every_chain_verifies(suite: Suite,
                                                              court: Court) -> None:
    court.case([("王五", "plaintiff", None)], "2021-07-01")

    def sealed() -> dict[str, int] | None:
        counts = {}
        for name in registry.SERVICES:
            with suite.runtimes[name].db.transaction() as session:
                if audit.unsealed(session):
                    return None
                check = audit.verify(session)
                assert check.ok, (name, check)
                counts[name] = check.entries
        return counts

    counts = wait_for(sealed, timeout=30, message="every trail sealed")
    assert counts["matters"] > 0 and counts["identity"] > 0


def test_no_trail_holds_an_id_number_or_a_mobile_number_in_clear(suite: Suite,
                                                                 court: Court) -> None:
    body = individual(name="冯六")  # an account with both, registered and signed in just now
    assert court.http.post("/api/identity/accounts", json=body).status_code == 201
    login(court.http, body["phone"], body["password"])
    court.http.post("/api/identity/tokens", json={"username": body["id_number"],
                                                  "password": "wrong-password-1"})
    scanned = 0
    for name in registry.SERVICES:
        with suite.runtimes[name].db.transaction() as session:
            for row in session.execute(select(audit_trail)):
                text = "\t".join(str(value) for value in row)
                assert body["id_number"] not in text and body["phone"] not in text, row
                # ids are UUIDs and the chain's hashes hex: either can hold a run of digits
                # shaped like a mobile number by chance
                text = HEX_HASH.sub("<hash>", UUID.sub("<id>", text))
                assert not ID_NUMBER.search(text) and not MOBILE.search(text), (name, row)
                scanned += 1
    assert scanned > 20  # the scan saw the module's accounts, cases and sign-ins
