"""identity built the way the suite builds it (``make_runtime`` + ``create_app``), on a fresh
SQLite file, and — marked ``real`` — on a fresh PostgreSQL database on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ecourt.runtime import make_runtime
from servicekit.config import Settings
from servicekit.service import Runtime
from servicekit.testing import pg_databases
from servicekit.tokens import TokenVerifier
from servicekit.web import SERVICE_TOKEN_HEADER
from services.identity.app import SERVICE, create_app
from services.identity.keys import load_signing_key
from services.identity.usecases import staff
from tests.factories import individual, mobile

PASSWORD = "correct-horse-battery"


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.real)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/i.db"
        return
    if not _reachable(5432):
        pytest.fail("PostgreSQL not reachable on 127.0.0.1: run `make services`",
                    pytrace=False)
    with pg_databases(["identity"], prefix="ecourt_idt") as urls:
        yield urls["identity"]


@pytest.fixture
def rt(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv("ECOURT_DATA_DIR", str(tmp_path))
    for name in ("IDENTITY_SIGNING_KEY_FILE", "IDENTITY_PREVIOUS_KEY_FILES",
                 "IDENTITY_TRUST_FORWARDED", "IDENTITY_DATABASE_URL", "ECOURT_ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    runtime = make_runtime(SERVICE, Settings.from_env("identity", database_url=database_url),
                           verifier=None)
    key = load_signing_key()  # generated once under ECOURT_DATA_DIR, as in the embedded tier
    runtime.extras["signing_key"] = key
    runtime.verifier = TokenVerifier(lambda: {"keys": [key.jwk()]})
    # password tests script failures without captchas; test_signin.py turns the rule on
    runtime.extras["captcha_after_failure"] = False
    yield runtime
    runtime.db.dispose()


@pytest.fixture
def app(rt: Runtime) -> Flask:
    return create_app(rt)


@dataclass
class Identity:
    """A client of the identity app with the calls the tests repeat."""

    app: Flask
    rt: Runtime

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client()

    def call(self, method: str, path: str, *, token: str | None = None, ip: str = "127.0.0.1",
             headers: dict[str, str] | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        return self.client.open(path, method=method, headers=all_headers,
                                environ_base={"REMOTE_ADDR": ip}, **kwargs)

    def internal(self, path: str, **kwargs: Any):  # type: ignore[no-untyped-def]
        return self.call("GET", path, headers={
            SERVICE_TOKEN_HEADER: self.rt.settings.service_secret}, **kwargs)

    def register(self, **overrides: str) -> tuple[dict[str, str], dict[str, Any]]:
        person = individual(**overrides)
        resp = self.call("POST", "/accounts", json=person)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        return person, resp.get_json()

    def login(self, username: str, password: str = PASSWORD, ip: str = "127.0.0.1"):  # type: ignore[no-untyped-def]
        return self.call("POST", "/tokens", json={"username": username, "password": password},
                         ip=ip)

    def tokens(self, username: str, password: str = PASSWORD, ip: str = "127.0.0.1") -> dict:  # type: ignore[type-arg]
        resp = self.login(username, password, ip)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        return resp.get_json()

    def admin(self, court: str = "粤01") -> tuple[str, dict[str, Any]]:
        """A court administrator (as ``ecourt create-admin`` makes one) and their tokens."""
        phone = mobile()
        staff.create_admin(self.rt.db, court=court, court_name=f"{court}法院", name="管理员",
                           phone=phone, password=PASSWORD)
        return phone, self.tokens(phone)

    def add_staff(self, admin_token: str, **body: Any) -> dict[str, Any]:
        payload = {"name": "李法官", "phone": mobile(), "password": PASSWORD,
                   "roles": ["judge"], "department": "民一庭", **body}
        resp = self.call("POST", "/staff", json=payload, token=admin_token)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        return {**resp.get_json(), "phone": payload["phone"]}


@pytest.fixture
def identity(app: Flask, rt: Runtime) -> Identity:
    return Identity(app, rt)

