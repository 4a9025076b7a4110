"""``ecourt create-admin``: a court's first administrator, in the embedded tier (SQLite under
ECOURT_DATA_DIR) and the distributed one (IDENTITY_DATABASE_URL); migrations run first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from ecourt.cli import main
from ecourt.runtime import make_runtime
from servicekit.config import Settings
from servicekit.testing import root_logging_kept
from servicekit.tokens import TokenVerifier
from services.identity.app import SERVICE, create_app
from services.identity.keys import load_signing_key
from services.identity.tests.conftest import Identity

ADMIN_PASSWORD = "admin-secret-pass"


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ECOURT_DATA_DIR", str(tmp_path / "data"))
    for name in ("IDENTITY_DATABASE_URL", "ECOURT_ADMIN_PASSWORD", "IDENTITY_SIGNING_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    with root_logging_kept():  # the CLI configures JSON logging on the root logger
        yield


def _app(url: str) -> Identity:
    rt = make_runtime(SERVICE, Settings.from_env("identity", database_url=url), verifier=None)
    key = load_signing_key()
    rt.extras["signing_key"] = key
    rt.verifier = TokenVerifier(lambda: {"keys": [key.jwk()]})
    app: Flask = create_app(rt)
    return Identity(app, rt)


def _args(phone: str, *extra: str) -> list[str]:
    return ["create-admin", "--court", "粤01", "--court-name", "广州市中级人民法院",
            "--name", "管理员", "--phone", phone, *extra]


def _signs_in_as_admin(identity: Identity, phone: str, password: str) -> None:
    tokens = identity.tokens(phone, password)
    claims = identity.rt.verifier.verify(tokens["access_token"])  # type: ignore[union-attr]
    assert claims["roles"] == ["court_admin"] and claims["court"] == "粤01"
    assert claims["kind"] == "staff"
    staff = identity.call("POST", "/staff", token=tokens["access_token"], json={
        "name": "立案法官", "phone": "13700137000", "password": "judge-pass-1",
        "roles": ["judge", "registry_reviewer"], "department": "立案庭"})
    assert staff.status_code == 201


def test_embedded_tier_sqlite_under_the_data_dir(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_args("13600136000", "--password", ADMIN_PASSWORD)) == 0
    db = tmp_path / "data" / "identity.db"
    assert db.exists()
    out = capsys.readouterr()
    assert "136****6000" in out.out
    assert "13600136000" not in out.out + out.err and ADMIN_PASSWORD not in out.out + out.err
    identity = _app(f"sqlite:///{db}")
    try:
        _signs_in_as_admin(identity, "13600136000", ADMIN_PASSWORD)
    finally:
        identity.rt.db.dispose()


def test_password_from_the_environment_and_database_from_its_url(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/elsewhere.db"
    monkeypatch.setenv("IDENTITY_DATABASE_URL", url)
    monkeypatch.setenv("ECOURT_ADMIN_PASSWORD", ADMIN_PASSWORD)
    assert main(_args("13600136001")) == 0
    assert not (tmp_path / "data" / "identity.db").exists()
    identity = _app(url)
    try:
        _signs_in_as_admin(identity, "13600136001", ADMIN_PASSWORD)
    finally:
        identity.rt.db.dispose()


@pytest.mark.real
def test_distributed_tier_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    from servicekit.testing import pg_databases

    with pg_databases(["identity"], prefix="ecourt_idcli") as urls:
        monkeypatch.setenv("IDENTITY_DATABASE_URL", urls["identity"])
        monkeypatch.setenv("ECOURT_ADMIN_PASSWORD", ADMIN_PASSWORD)
        assert main(_args("13600136002")) == 0
        identity = _app(urls["identity"])
        try:
            _signs_in_as_admin(identity, "13600136002", ADMIN_PASSWORD)
        finally:
            identity.rt.db.dispose()


def test_bad_input_and_duplicates_fail_without_writing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(_args("12345", "--password", ADMIN_PASSWORD)) == 1
    assert main(_args("13600136003", "--password", "short")) == 1
    err = capsys.readouterr().err
    assert "phone" in err and "password" in err and "short" not in err
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(_args("13600136003")) == 1  # no password given anywhere
    assert "ECOURT_ADMIN_PASSWORD" in capsys.readouterr().err
    assert main(_args("13600136003", "--password", ADMIN_PASSWORD)) == 0
    assert main(_args("13600136003", "--password", ADMIN_PASSWORD)) == 1
    assert "already registered" in capsys.readouterr().err
    # a second court's administrator, and the court is named once
    assert main(["create-admin", "--court", "粤02", "--court-name", "深圳市中级人民法院",
                 "--name", "管理员", "--phone", "13600136004", "--password",
                 ADMIN_PASSWORD]) == 0
