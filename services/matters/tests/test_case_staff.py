"""POST /cases asks identity (a real one, in-process, on the same kind of database) whether the
judge and clerk a case names are active staff of its court with those roles: a wrong one is
422 unknown-staff, an identity that cannot answer is 503, and either way nothing is written.
Likewise whether each party's account is a person or company of the party's name, in use
(422 unknown-party-account).

On SQLite and (marked ``real``) PostgreSQL."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from ecourt.runtime import make_runtime
from servicekit.clients import InternalClient
from servicekit.config import Settings
from servicekit.service import Runtime
from servicekit.tables import audit_trail, idempotency_keys, outbox
from servicekit.testing import pg_databases, problem_of
from services.identity.app import SERVICE as IDENTITY
from services.identity.usecases import staff
from services.matters.case_staff import EXTRAS_KEY, IDS_PER_ASK, IdentityDirectory
from services.matters.models import Case
from services.matters.tests.conftest import (
    COURT,
    COURT_NAME,
    OTHER_COURT,
    Harness,
    case_number,
    harness_on,
)
from tests.factories import individual, mobile

PASSWORD = "correct-horse-battery"


@dataclass
class Checked:
    """The matters harness whose staff directory is a real identity, with its staff."""

    h: Harness
    identity: Runtime
    identity_app: Flask
    ids: dict[str, str]

    def use_identity(self, client: InternalClient) -> None:
        self.h.rt.clients = client

    def in_process(self, secret: str | None = None) -> InternalClient:
        return InternalClient(secret or self.h.rt.settings.service_secret,
                              {"identity": self.identity_app})

    def body(self, **overrides: Any) -> dict[str, Any]:
        return {"case_number": case_number(COURT),
                "court": COURT, "court_name": COURT_NAME, "cause": "买卖合同纠纷",
                "department": "民一庭", "judge_account_id": self.ids["judge"],
                "clerk_account_id": self.ids["clerk"],
                "parties": [{"name": "周俊雄", "role": "plaintiff",
                             "account_id": self.ids["party"]}], **overrides}

    def register(self, body: dict[str, Any], key: str | None = None):  # type: ignore[no-untyped-def]
        headers = self.h.token("specialist", sub=self.ids["specialist"])  # one principal
        if key:
            headers["Idempotency-Key"] = key
        return self.h.client.post("/cases", json=body, headers=headers)

    def written(self) -> tuple[int, int, int]:
        """Cases, outbox rows and audit entries matters holds."""
        with self.h.rt.db.transaction() as s:
            return tuple(s.scalar(select(func.count()).select_from(t)) or 0  # type: ignore[return-value]
                         for t in (Case.__table__, outbox, audit_trail))


def _staff(identity: Runtime, court: str, role: str, department: str = "民一庭") -> str:
    return staff.create_staff(identity.db, caller_court=court, name=f"{role}-{court}",
                              phone=mobile(), password=PASSWORD, roles=[role],
                              department=department).id


def _checked(url: str, identity_url: str, tmp_path: Path) -> Iterator[Checked]:
    identity = make_runtime(IDENTITY, Settings.from_env("identity", database_url=identity_url),
                            verifier=None)
    identity_app = IDENTITY.build_app(identity)  # type: ignore[misc]
    admins: dict[str, str] = {}
    for court in (COURT, OTHER_COURT):
        admins[court] = staff.create_admin(identity.db, court=court, court_name=f"{court}法院",
                                           name="管理员", phone=mobile(), password=PASSWORD).id
    ids = {"judge": _staff(identity, COURT, "judge"), "clerk": _staff(identity, COURT, "clerk"),
           "other_judge": _staff(identity, COURT, "judge", department="民二庭"),
           "judge_elsewhere": _staff(identity, OTHER_COURT, "judge"),
           "admin": admins[COURT], "specialist": _staff(identity, COURT, "specialist")}
    for key, name in (("party", "周俊雄"), ("someone_else", "李四")):
        person = identity_app.test_client().post("/accounts", json=individual(name=name))
        assert person.status_code == 201, person.get_json()
        ids[key] = person.get_json()["id"]
    try:
        for h in harness_on(url, tmp_path):
            del h.rt.extras[EXTRAS_KEY]  # the directory is identity, through rt.clients
            checked = Checked(h, identity, identity_app, ids)
            checked.use_identity(checked.in_process())
            yield checked
    finally:
        identity.db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.real)])
def checked(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Checked]:
    monkeypatch.setenv("ECOURT_DATA_DIR", str(tmp_path))  # identity's signing key
    if request.param == "sqlite":
        yield from _checked(f"sqlite:///{tmp_path}/m.db", f"sqlite:///{tmp_path}/i.db", tmp_path)
        return
    with pg_databases(["matters", "identity"]) as urls:
        yield from _checked(urls["matters"], urls["identity"], tmp_path)


def test_a_case_naming_active_staff_of_its_court_is_registered(checked: Checked) -> None:
    resp = checked.register(checked.body())
    assert resp.status_code == 201, resp.get_json()
    # no clerk named; a judge of another division of the court (departments are not compared)
    alone = checked.register(checked.body(clerk_account_id=None,
                                          judge_account_id=checked.ids["other_judge"]))
    assert alone.status_code == 201, alone.get_json()
    assert checked.written()[0] == 2


def _refusals(c: Checked) -> list[tuple[str, dict[str, Any]]]:
    return [("judge_account_id", {"judge_account_id": str(uuid.uuid4())}),  # unknown id
            ("clerk_account_id", {"clerk_account_id": c.ids["party"]}),  # a party's account
            ("judge_account_id", {"judge_account_id": c.ids["judge_elsewhere"]}),
            ("clerk_account_id", {"clerk_account_id": c.ids["other_judge"]}),  # not a clerk
            ("judge_account_id", {"judge_account_id": c.ids["clerk"],  # not a judge
                                  "clerk_account_id": None}),
            ("judge_account_id", {"judge_account_id": c.ids["admin"]})]


def test_a_judge_or_clerk_identity_does_not_know_is_refused_and_nothing_written(
        checked: Checked) -> None:
    before = checked.written()
    for field, overrides in _refusals(checked):
        body = checked.body(**overrides)
        resp = checked.register(body, key=str(uuid.uuid4()))
        problem = problem_of(resp, 422, "unknown-staff")
        assert list(problem["errors"]["json"]) == [field], (overrides, problem)
        assert body[field] not in resp.get_data(as_text=True)  # no account id echoed
        assert checked.written() == before, overrides
    both = checked.register(checked.body(judge_account_id="typo", clerk_account_id="stale"))
    assert set(problem_of(both, 422, "unknown-staff")["errors"]["json"]) == {
        "judge_account_id", "clerk_account_id"}
    assert checked.written() == before


def test_a_disabled_judge_is_refused(checked: Checked) -> None:
    before = checked.written()
    staff.set_status(checked.identity.db, caller_court=COURT, caller_id=checked.ids["admin"],
                     account_id=checked.ids["judge"], active=False)
    resp = checked.register(checked.body())
    assert problem_of(resp, 422, "unknown-staff")["errors"]["json"].keys() == {
        "judge_account_id"}
    assert checked.written() == before
    staff.set_status(checked.identity.db, caller_court=COURT, caller_id=checked.ids["admin"],
                     account_id=checked.ids["judge"], active=True)
    assert checked.register(checked.body()).status_code == 201


def test_the_judge_named_again_as_clerk_is_refused(checked: Checked) -> None:
    before = checked.written()
    resp = checked.register(checked.body(clerk_account_id=checked.ids["judge"]))
    assert "clerk_account_id" in problem_of(resp, 422, "validation-error")["errors"]["json"]
    assert checked.written() == before


class _Recording(InternalClient):
    """The in-process client to identity, keeping the paths it was asked for."""

    def __init__(self, secret: str, apps: dict[str, Flask]) -> None:
        super().__init__(secret, apps)
        self.asked: list[str] = []

    def get_json(self, service: str, path: str) -> dict[str, Any]:
        self.asked.append(path)
        return super().get_json(service, path)


def test_one_ask_of_identity_checks_the_judge_the_clerk_and_the_parties(
        checked: Checked) -> None:
    """Not three (failed before: two lists of the court's whole staff, then the parties)."""
    client = _Recording(checked.h.rt.settings.service_secret, {"identity": checked.identity_app})
    checked.use_identity(client)
    resp = checked.register(checked.body())
    assert resp.status_code == 201, resp.get_json()
    assert len(client.asked) == 1 and client.asked[0].startswith("/internal/accounts?"), (
        client.asked)
    wrong = checked.register(checked.body(judge_account_id=checked.ids["specialist"]))
    problem_of(wrong, 422, "unknown-staff")  # a role it lacks, told from the same answer
    assert len(client.asked) == 2


def test_a_piece_is_never_more_than_identity_answers() -> None:
    from services.identity.schemas import MAX_ACCOUNTS_ASKED

    assert IDS_PER_ASK <= MAX_ACCOUNTS_ASKED


def test_more_accounts_than_identity_answers_at_once_are_asked_in_pieces(
        checked: Checked) -> None:
    client = _Recording(checked.h.rt.settings.service_secret, {"identity": checked.identity_app})
    ids = [checked.ids["judge"], *(str(uuid.uuid4()) for _ in range(IDS_PER_ASK)),
           checked.ids["party"]]
    found = IdentityDirectory(client).accounts(ids)
    assert len(client.asked) == 2
    assert set(found) == {checked.ids["judge"], checked.ids["party"]}
    assert found[checked.ids["judge"]]["roles"] == ["judge"]
    assert found[checked.ids["party"]]["court"] is None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nobody listens once it is closed


def test_an_unreachable_identity_is_a_503_and_the_same_key_succeeds_later(
        checked: Checked, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_UPSTREAM_IDENTITY", f"http://127.0.0.1:{_closed_port()}")
    checked.use_identity(InternalClient(checked.h.rt.settings.service_secret, timeout=1.0))
    before = checked.written()
    body, key = checked.body(), str(uuid.uuid4())
    down = checked.register(body, key=key)
    problem_of(down, 503, "service-unavailable")
    assert down.headers["Retry-After"] == "5"
    assert checked.written() == before
    with checked.h.rt.db.transaction() as s:  # the key was released, not kept as the answer
        assert s.scalar(select(func.count()).select_from(idempotency_keys).where(
            idempotency_keys.c.key == key)) == 0
    assert problem_of(checked.register(body, key=key), 503, "service-unavailable")

    checked.use_identity(checked.in_process())  # identity is back
    again = checked.register(body, key=key)
    assert again.status_code == 201, again.get_json()
    assert "Idempotent-Replayed" not in again.headers
    replayed = checked.register(body, key=key)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.get_json()["id"] == again.get_json()["id"]
    assert checked.written()[0] == before[0] + 1


def test_an_identity_answering_an_error_is_a_503(checked: Checked) -> None:
    checked.use_identity(checked.in_process(secret="not-the-service-secret"))  # identity: 403
    before = checked.written()
    problem_of(checked.register(checked.body()), 503, "service-unavailable")
    assert checked.written() == before


class _ProxyErrorPage(BaseHTTPRequestHandler):
    """What a proxy in front of a stopped identity answers: an HTML error page."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
        page = b"<html><body>502 Bad Gateway</body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *_: Any) -> None:
        pass


def test_an_html_error_page_instead_of_identity_is_a_503_not_a_500(
        checked: Checked, monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyErrorPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("GATEWAY_UPSTREAM_IDENTITY",
                           f"http://127.0.0.1:{server.server_address[1]}")
        checked.use_identity(InternalClient(checked.h.rt.settings.service_secret, timeout=1.0))
        before = checked.written()
        problem_of(checked.register(checked.body()), 503, "service-unavailable")
        assert checked.written() == before
    finally:
        server.shutdown()
        server.server_close()


def _parties(*parties: tuple[str, str | None]) -> list[dict[str, Any]]:
    return [{"name": name, "role": role, "account_id": account_id}
            for (name, account_id), role in zip(parties, ("plaintiff", "defendant"), strict=False)]


def test_a_party_given_an_account_that_is_not_theirs_is_refused(checked: Checked) -> None:
    """Someone else's account (another name), an id of no account, a court staff account:
    each 422 naming that party, no account id echoed, nothing written (failed before: the case
    was registered, and shown to whoever held the account)."""
    before = checked.written()
    for account_id in (checked.ids["someone_else"], str(uuid.uuid4()), checked.ids["clerk"]):
        body = checked.body(parties=_parties(("黄添强", None), ("周俊雄", account_id)))
        resp = checked.register(body, key=str(uuid.uuid4()))
        problem = problem_of(resp, 422, "unknown-party-account")
        assert problem["errors"]["json"] == {
            "parties": {"1": {"account_id": ["not an account of a party of this name"]}}}
        assert account_id not in resp.get_data(as_text=True)
        assert checked.written() == before
    # the same account under the party's own name is theirs
    ok = checked.register(checked.body(parties=_parties(("周俊雄", checked.ids["party"]),
                                                        ("李四", checked.ids["someone_else"]))))
    assert ok.status_code == 201, ok.get_json()
    assert [p["name"] for p in ok.get_json()["parties"]] == ["周俊雄", "李四"]


def test_a_disabled_party_account_is_refused_and_a_party_without_one_is_not_asked(
        checked: Checked) -> None:
    from services.identity.models import Account

    with checked.identity.db.transaction() as s:
        s.get(Account, checked.ids["someone_else"]).status = "disabled"
    body = checked.body(parties=_parties(("李四", checked.ids["someone_else"])))
    problem_of(checked.register(body), 422, "unknown-party-account")
    # a party who has not registered: no account to check, and identity is not asked for one
    checked.use_identity(checked.in_process())
    unregistered = checked.register(checked.body(parties=_parties(("王五", None))))
    assert unregistered.status_code == 201, unregistered.get_json()


def test_party_names_compare_as_both_systems_write_them() -> None:
    from services.matters.case_parties import same_name

    assert same_name("广州虚构科技有限公司（广州分公司）", " 广州虚构科技有限公司(广州分公司)")
    assert not same_name("周俊雄", "周俊")
    assert not same_name("周俊雄", "周 俊雄")


def test_one_account_given_to_two_parties_is_refused_naming_the_second(checked: Checked) -> None:
    """One person listed twice (as plaintiff and defendant, or twice in one role) was
    registered: the party saw the case twice over, applied as either, was served twice. Now
    422 at the later party's account_id, naming the earlier by its place; no account id
    echoed, nothing written, identity not even asked."""
    before = checked.written()
    party = checked.ids["party"]
    for roles, at in ((("plaintiff", "defendant"), "1"), (("plaintiff", "plaintiff"), "1"),
                      (("plaintiff", "third_party"), "2")):
        listed = [{"name": "周俊雄", "role": roles[0], "account_id": party},
                  {"name": "黄添强", "role": "defendant", "account_id": None},
                  {"name": "周俊雄", "role": roles[1], "account_id": party}]
        if at == "1":
            del listed[1]
        resp = checked.register(checked.body(parties=listed), key=str(uuid.uuid4()))
        problem = problem_of(resp, 422, "validation-error")
        assert problem["errors"]["json"] == {
            "parties": {at: {"account_id": ["the same account as party 0: one person is "
                                            "one party of a case"]}}}, roles
        assert party not in resp.get_data(as_text=True)
        assert checked.written() == before
    # two parties without an account are not compared: two people may share a name
    ok = checked.register(checked.body(parties=[
        {"name": "周俊雄", "role": "plaintiff", "account_id": party},
        {"name": "王五", "role": "defendant", "account_id": None},
        {"name": "王五", "role": "defendant", "account_id": None}]))
    assert ok.status_code == 201, ok.get_json()
    assert [p["name"] for p in ok.get_json()["parties"]] == ["周俊雄", "王五", "王五"]
