"""Fixtures: a matters runtime on SQLite in a temp folder, its app, its handlers, tokens,
a verified lawyer, a case, and helpers to read (and contract-check) what matters emitted."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from ecourt.contracts import EVENTS, validate_event
from ecourt.runtime import make_runtime
from servicekit.blobs import LocalBlobStore
from servicekit.config import Settings
from servicekit.db import utcnow
from servicekit.envelope import CloudEvent
from servicekit.service import Runtime
from servicekit.tables import audit_trail, outbox
from servicekit.testing import pg_databases
from servicekit.tokens import SigningKey, TokenVerifier
from services.matters.app import SERVICE
from services.matters.bindings import EXTRAS_KEY
from services.matters.case_staff import EXTRAS_KEY as EXTRAS_KEY_STAFF

COURT, COURT_NAME = "粤01", "广州市中级人民法院"
OTHER_COURT = "粤02"
APPLY = {"kind": "effectiveness_certificate", "reason": "办理强制执行", "use": "向执行法院提交"}
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


#: a distinct case number per call in this process (each test has its own database): numbers
#: drawn at random collided now and then when a test made a dozen cases
_CASE_SERIALS = itertools.count(uuid.uuid4().int % 500_000 + 1)


def case_number(court: str) -> str:
    """A fresh, well-formed case number of ``court`` (``domain.CASE_NUMBER``)."""
    return f"(2021){court}民初{next(_CASE_SERIALS)}号"


@dataclass
class StaffBook:
    """A stand-in for identity's directory (``case_staff.StaffDirectory``) in the tests about
    something else than the check: the staff and the people the harness made up. The check
    itself is tested against a real in-process identity (test_case_staff.py)."""

    #: the accounts the harness made up: id -> kind, name, status, court, roles
    people: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, court: str, role: str) -> str:
        account_id = str(uuid.uuid4())
        self.people[account_id] = {"kind": "staff", "name": f"{role} {account_id[:4]}",
                                   "status": "active", "court": court, "roles": [role]}
        return account_id

    def person(self, name: str) -> str:
        account_id = str(uuid.uuid4())
        self.people[account_id] = {"kind": "individual", "name": name, "status": "active",
                                   "court": None, "roles": ["party"]}
        return account_id

    def accounts(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {i: dict(self.people[i]) for i in ids if i in self.people}


@dataclass
class Harness:
    rt: Runtime
    client: FlaskClient
    key: SigningKey
    handlers: dict[str, Callable[..., None]]
    ids: dict[str, str] = field(default_factory=dict)
    book: StaffBook = field(default_factory=StaffBook)

    def staff_id(self, role: str, court: str = COURT) -> str:
        """The harness's ``role`` (judge, clerk) of ``court``: ``ids[role]`` in ``COURT``, one
        made on first use in another court."""
        if court == COURT:
            return self.ids[role]
        key = f"{role}@{court}"
        if key not in self.ids:
            self.ids[key] = self.book.add(court, role)
        return self.ids[key]

    def claims(self, *roles: str, court: str | None = COURT,
               sub: str | None = None) -> dict[str, Any]:
        claims: dict[str, Any] = {"sub": sub or str(uuid.uuid4()), "roles": list(roles)}
        if court is not None:
            claims["court"] = court
        return claims

    def token(self, *roles: str, court: str | None = COURT, sub: str | None = None,
              ttl: int = 900) -> dict[str, str]:
        return {"Authorization":
                f"Bearer {self.key.sign(self.claims(*roles, court=court, sub=sub), ttl=ttl)}"}

    def staff(self, role: str) -> dict[str, str]:
        return self.token(role, sub=self.ids[role])

    def party(self, who: str = "plaintiff") -> dict[str, str]:
        return self.token("party", court=None, sub=self.ids[who])

    def lawyer(self, sub: str | None = None) -> dict[str, str]:
        return self.token("lawyer", court=None, sub=sub or self.ids["lawyer"])

    def if_match(self, path: str) -> dict[str, str]:
        """The If-Match a client sends on an update: the ETag of the application or binding
        at ``path`` as just read (by a specialist of the court, who reads all of them)."""
        resp = self.client.get(path, headers=self.token("specialist"))
        assert resp.status_code == 200, resp.get_json()
        return {"If-Match": resp.headers["ETag"]}

    def deliver(self, type_: str, data: dict[str, Any]) -> None:
        """Hand ``type_`` to matters' handler as its publisher (the type's first word) sends it."""
        event = CloudEvent(type=type_, source=f"/{type_.split('.', 1)[0]}", data=data)
        if (EVENTS / f"{type_}.json").exists():  # the publisher writes this contract
            validate_event(event.to_dict())
        with self.rt.db.transaction() as session:
            self.handlers[type_](session, event)

    def verify_lawyer(self, name: str = "李律师", law_firm: str = "广东某某律师事务所",
                      sub: str | None = None) -> str:
        sub = sub or str(uuid.uuid4())
        self.deliver("identity.lawyer.verified", {
            "account_id": sub, "name": name,
            "license_no": f"1440120{uuid.uuid4().int % 10**10:010d}",
            "law_firm": law_firm, "method": "online",
            "verified_at": utcnow().isoformat().replace("+00:00", "Z")})
        return sub

    def case(self, court: str = COURT, judge: str | None = None,
             clerk: str | None = None, plaintiff: str | None = None) -> dict[str, Any]:
        number = case_number(court)
        resp = self.client.post("/cases", headers=self.token("specialist", court=court), json={
            "case_number": number, "court": court, "court_name": COURT_NAME,
            "cause": "买卖合同纠纷", "department": "民一庭",
            "judge_account_id": judge or self.staff_id("judge", court),
            "clerk_account_id": clerk or self.staff_id("clerk", court),
            "effective_date": "2021-07-01",
            "parties": [{"name": "周俊雄", "role": "plaintiff",
                         "account_id": plaintiff or self.ids["plaintiff"]},
                        {"name": "黄添强", "role": "defendant", "account_id": None}]})
        assert resp.status_code == 201, resp.get_json()
        return resp.get_json()

    def reviewed(self, review: dict[str, Any]) -> dict[str, Any]:
        """An application for an effectiveness certificate in a new case, which a specialist
        then reviewed with ``review`` (``{"issuable": True}``, ``{"needs_judge": True}``)."""
        case = self.case()
        app = self.client.post(f"/cases/{case['id']}/applications", headers=self.party(),
                               json=APPLY)
        assert app.status_code == 201, app.get_json()
        path = f"/applications/{app.get_json()['id']}"
        done = self.client.post(f"{path}/review", json=review,
                                headers={**self.token("specialist"), **self.if_match(path)})
        assert done.status_code == 200, done.get_json()
        return done.get_json()

    def ask(self, case_number: str, party_name: str = "黄添强",
            headers: dict[str, str] | None = None, data: bytes = PDF,
            filename: str = "授权委托书.pdf", mimetype: str = "application/pdf"):  # type: ignore[no-untyped-def]
        import io

        return self.client.post("/bindings", headers=headers or self.lawyer(),
                                content_type="multipart/form-data", data={
                                    "case_number": case_number, "party_name": party_name,
                                    "letter": (io.BytesIO(data), filename, mimetype)})

    def denials(self, subject: str) -> list[Any]:
        """The audit trail's refusals about ``subject`` (``case:<id>``, ``application:<id>``)."""
        with self.rt.db.transaction() as session:
            return list(session.execute(select(audit_trail).where(
                audit_trail.c.subject == subject, audit_trail.c.outcome == "denied")).all())

    def emitted(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Every event in the outbox (in order), each checked against its contract."""
        with self.rt.db.transaction() as session:
            rows = session.execute(select(outbox.c.body).order_by(outbox.c.id)).all()
        events = [json.loads(row.body) for row in rows]
        for envelope in events:
            validate_event(envelope)
        return [e for e in events if type_ is None or e["type"] == type_]


def harness_on(database_url: str, tmp_path: Path) -> Iterator[Harness]:
    """A harness on the database at ``database_url`` (SQLite by default, PostgreSQL for the
    tests of what only PostgreSQL does)."""
    key = SigningKey.generate()
    verifier = TokenVerifier(lambda: {"keys": [key.jwk()]})
    settings = Settings.from_env("matters", database_url=database_url)
    rt = make_runtime(SERVICE, settings, verifier)
    rt.extras[EXTRAS_KEY] = LocalBlobStore(tmp_path / "blobs")
    app = SERVICE.build_app(rt)  # type: ignore[misc]
    handlers = dict(SERVICE.handlers(rt))
    h = Harness(rt, app.test_client(), key, handlers)
    rt.extras[EXTRAS_KEY_STAFF] = h.book
    h.ids.update({r: h.book.add(COURT, r) for r in ("judge", "clerk")})
    h.ids.update({r: h.book.person("周俊雄") for r in ("plaintiff", "stranger")})
    h.ids["lawyer"] = h.verify_lawyer()
    try:
        yield h
    finally:
        rt.db.dispose()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    yield from harness_on(f"sqlite:///{tmp_path}/m.db", tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.real)])
def on_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """The harness on SQLite, and on PostgreSQL (for what only PostgreSQL does: its
    snapshots, server-side cursors and row locks)."""
    if request.param == "sqlite":
        yield from harness_on(f"sqlite:///{tmp_path}/m.db", tmp_path)
        return
    with pg_databases(["matters"]) as urls:
        yield from harness_on(urls["matters"], tmp_path)
