"""``ecourt blobs gc identity`` end to end: an organization's licence is kept, the licence of
a refused duplicate registration (409, the blob written before the transaction rolled back)
is garbage once older than the grace. SQLite and — marked ``real`` — PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import pytest

from ecourt.cli import main
from servicekit.service import Runtime
from servicekit.testing import root_logging_kept
from services.identity.organizations import blob_store
from services.identity.tests.conftest import Identity
from services.identity.tests.test_organizations import PNG, licence, register_org

A_MONTH_AGO = time.time() - 30 * 24 * 3600


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def _env(rt: Runtime, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # the app's runtime (conftest, which clears the variable: hence after it) and the command
    # read the same database and data folder
    monkeypatch.setenv("IDENTITY_DATABASE_URL", database_url)
    for name in ("IDENTITY_BLOB_DIR", "ECOURT_BLOB_GC_GRACE_HOURS"):
        monkeypatch.delenv(name, raising=False)
    with root_logging_kept():  # the CLI configures JSON logging on the root logger
        yield


def test_a_refused_registrations_licence_is_collected_the_registered_one_kept(
        identity: Identity, capsys: pytest.CaptureFixture[str]) -> None:
    identity.admin("粤01")  # the court
    person, _ = identity.register()
    token = identity.tokens(person["phone"])["access_token"]
    kept, refused = PNG + b"first scan", PNG + b"another scan of a duplicate"
    org = register_org(identity, token, file=licence(kept))
    assert org.status_code == 201, org.get_data(as_text=True)
    duplicate = register_org(identity, token, file=licence(refused))
    assert duplicate.status_code == 409
    store = blob_store(identity.rt)
    paths = [p for p in store.root.rglob("*") if p.is_file()]
    assert len(paths) == 2  # the refused request left its file
    for path in paths:
        os.utime(path, (A_MONTH_AGO, A_MONTH_AGO))
    kept_path, refused_path = store.path_of(sha256(kept)), store.path_of(sha256(refused))
    assert sorted(paths) == sorted([kept_path, refused_path])

    assert main(["blobs", "gc", "identity", "--dry-run"]) == 0
    assert "would remove 1 unreferenced blob(s)" in capsys.readouterr().out
    assert kept_path.exists() and refused_path.exists()

    assert main(["blobs", "gc", "identity"]) == 0
    out = capsys.readouterr().out
    assert f"removed 1 unreferenced blob(s) and 0 leftover temporary file(s), {len(refused)} " \
           f"bytes" in out
    assert kept_path.exists() and not refused_path.exists()
    assert main(["blobs", "gc", "identity"]) == 0  # nothing more to do
    assert "removed 0 unreferenced blob(s)" in capsys.readouterr().out


def test_a_young_refused_licence_waits_for_the_grace(identity: Identity) -> None:
    identity.admin("粤01")
    person, _ = identity.register()
    token = identity.tokens(person["phone"])["access_token"]
    assert register_org(identity, token).status_code == 201
    assert register_org(identity, token, file=licence(PNG + b"young")).status_code == 409
    assert main(["blobs", "gc", "identity"]) == 0
    assert blob_store(identity.rt).path_of(sha256(PNG + b"young")).exists()


@pytest.mark.parametrize("service", ["filing", "notifier"])
def test_a_service_without_blobs_is_exit_2(service: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["blobs", "gc", service]) == 2
    err = capsys.readouterr().err
    assert f"{service} keeps no blobs" in err and "identity, matters, documents" in err


def test_an_unknown_service_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["blobs", "gc", "nosuch"]) == 2
    assert "unknown service 'nosuch'" in capsys.readouterr().err


def test_a_grace_under_an_hour_is_exit_2(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ECOURT_BLOB_GC_GRACE_HOURS", "0.5")
    assert main(["blobs", "gc", "identity"]) == 2
    assert "ECOURT_BLOB_GC_GRACE_HOURS must be at least 1" in capsys.readouterr().err


def test_a_database_referring_to_no_blob_is_refused_unless_told(
        identity: Identity, capsys: pytest.CaptureFixture[str]) -> None:
    """Pointed at a database with no organization and no verification (a wrong URL, a fresh
    restore), every old licence would count as garbage: the command refuses and deletes
    nothing, unless told the database truly holds none."""
    store = blob_store(identity.rt)
    orphan = store.put(PNG + b"a licence whose row is elsewhere")
    os.utime(store.path_of(orphan), (A_MONTH_AGO, A_MONTH_AGO))
    assert main(["blobs", "gc", "identity"]) == 1
    assert "refers to no blob at all" in capsys.readouterr().err
    assert store.path_of(orphan).exists()
    assert main(["blobs", "gc", "identity", "--dry-run"]) == 0  # a dry run only counts
    assert main(["blobs", "gc", "identity", "--empty-database-ok"]) == 0
    assert not store.path_of(orphan).exists()
