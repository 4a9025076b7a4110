"""Fixtures: a documents runtime on SQLite in a temp folder, its app, its handlers, tokens,
and helpers to deliver events and read what the service emitted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from ecourt.contracts import validate_event
from ecourt.runtime import make_runtime
from servicekit.blobs import LocalBlobStore
from servicekit.config import Settings
from servicekit.envelope import CloudEvent
from servicekit.service import Runtime
from servicekit.tables import outbox
from servicekit.testing import pg_databases
from servicekit.tokens import SigningKey, TokenVerifier
from services.documents.app import SERVICE
from services.documents.config import EXTRAS_KEY, Documents, DocumentsSettings

COURT, COURT_NAME = "粤01", "广州市中级人民法院"
SEAL_NAME = "广州市中级人民法院诉讼服务专用章"
BASE_URL = "http://127.0.0.1:8080/api/documents"
#: the body of the court admin's ``POST /seals`` for ``COURT``
SEAL = {"court": COURT, "court_name": COURT_NAME, "seal_name": SEAL_NAME}


@dataclass
class Harness:
    rt: Runtime
    client: FlaskClient
    key: SigningKey
    handlers: dict[str, Callable[..., None]]
    docs: Documents

    def token(self, *roles: str, court: str | None = COURT, sub: str | None = None,
              kind: str = "staff") -> dict[str, str]:
        claims: dict[str, Any] = {"sub": sub or str(uuid.uuid4()), "roles": list(roles),
                                  "kind": kind}
        if court is not None:
            claims["court"] = court
        return {"Authorization": f"Bearer {self.key.sign(claims)}"}

    def deliver(self, type_: str, data: dict[str, Any], event_id: str | None = None) -> None:
        event = CloudEvent(type=type_, source="/matters", data=data,
                           **({"id": event_id} if event_id else {}))
        validate_event(event.to_dict())
        with self.rt.db.transaction() as session:
            self.handlers[type_](session, event)

    def emitted(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Every event in the outbox (in order), each checked against its contract."""
        with self.rt.db.transaction() as session:
            rows = session.execute(select(outbox.c.body).order_by(outbox.c.id)).all()
        events = [json.loads(row.body) for row in rows]
        for envelope in events:
            validate_event(envelope)
        return [e for e in events if type_ is None or e["type"] == type_]

    def register_seal(self, court: str = COURT, court_name: str = COURT_NAME,
                      seal_name: str = SEAL_NAME) -> None:
        admin = self.token("court_admin", court=court)
        current = self.client.get(f"/seals/{court}", headers=admin)  # replacing: its ETag
        if current.status_code == 200:
            admin["If-Match"] = current.headers["ETag"]
        resp = self.client.post("/seals", headers=admin,
                                json={"court": court, "court_name": court_name,
                                      "seal_name": seal_name})
        assert resp.status_code in (200, 201), resp.get_json()

    def issue_certificate(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """A certificate issued (not yet published) under ``COURT``'s seal: the request
        matters sent and the ``documents.document.issued`` event it led to."""
        self.register_seal()
        request = certificate_request()
        self.deliver("matters.certificate.requested", request)
        [issued] = self.emitted("documents.document.issued")
        return request, issued


def certificate_request(application_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "request_id": str(uuid.uuid4()),
        "application_id": application_id or str(uuid.uuid4()),
        "case_id": str(uuid.uuid4()),
        "case_number": "(2026)粤01民初123号",
        "court": COURT, "court_name": COURT_NAME, "cause": "民间借贷纠纷",
        "parties": [{"name": "张三", "role": "plaintiff"},
                    {"name": "广州某某科技有限公司", "role": "defendant"}],
        "judgment": {"title": "民事判决书", "decided_on": "2026-03-01"},
        "effective_date": "2026-04-01",
        "service_number": "SF20261123000123",
        "applicant_account_id": str(uuid.uuid4()),
    }
    data.update(overrides)
    return data


def completed(doc_event: dict[str, Any], request: dict[str, Any],
              viewers: list[str]) -> dict[str, Any]:
    return {"application_id": request["application_id"],
            "service_number": request["service_number"],
            "case_number": request["case_number"], "court": request["court"],
            "court_name": request["court_name"], "kind": "effectiveness_certificate",
            "applicant_account_id": request["applicant_account_id"],
            "document_id": doc_event["data"]["document_id"], "viewer_account_ids": viewers}


def harness_on(database_url: str, tmp_path: Path) -> Iterator[Harness]:
    """A harness on the database at ``database_url`` (SQLite by default, PostgreSQL for the
    tests of what only PostgreSQL does)."""
    key = SigningKey.generate()
    verifier = TokenVerifier(lambda: {"keys": [key.jwk()]})
    settings = Settings.from_env("documents", database_url=database_url)
    rt = make_runtime(SERVICE, settings, verifier)
    docs = Documents(DocumentsSettings(public_base_url=BASE_URL, blob_dir=tmp_path / "blobs",
                                       font_path=None, max_upload_bytes=20 * 1024 * 1024),
                     LocalBlobStore(tmp_path / "blobs"))
    rt.extras[EXTRAS_KEY] = docs
    app = SERVICE.build_app(rt)  # type: ignore[misc]
    handlers = dict(SERVICE.handlers(rt))
    try:
        yield Harness(rt, app.test_client(), key, handlers, docs)
    finally:
        rt.db.dispose()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    yield from harness_on(f"sqlite:///{tmp_path}/d.db", tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.real)])
def on_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """The harness on SQLite, and on PostgreSQL (for what only PostgreSQL does: its READ ONLY
    transactions, its row locks)."""
    if request.param == "sqlite":
        yield from harness_on(f"sqlite:///{tmp_path}/d.db", tmp_path)
        return
    with pg_databases(["documents"]) as urls:
        yield from harness_on(urls["documents"], tmp_path)
