"""R7: the database goes away in the middle of traffic, as in a PostgreSQL restart or failover
(a TCP proxy between identity and PostgreSQL drops every connection and refuses new ones, then
heals). Every request either succeeds or fails cleanly with a 503 problem that says to try
again; nothing is half-written (each account has its one event, each event its account); and
the service recovers by itself once the database is back."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text
from werkzeug.test import Client

from ecourt import registry
from ecourt.embedded import Suite
from servicekit.tables import outbox
from servicekit.testing import TcpProxy, pg_databases
from tests.reliability.helpers import person

pytestmark = pytest.mark.real

REGISTERED = "identity.account.registered"


@pytest.fixture
def identity_through_a_proxy(tmp_path, infrastructure):  # type: ignore[no-untyped-def]
    proxy = TcpProxy("127.0.0.1", 5432)
    with pg_databases(list(registry.SERVICES), prefix="ecourt_rel") as urls:
        direct = urls["identity"]
        urls["identity"] = direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        suite = Suite(tmp_path / "suite", database_urls=urls)
        try:
            yield suite, proxy
        finally:
            proxy.heal()
            suite.stop()
            proxy.close()


def test_a_database_restart_fails_requests_cleanly_and_writes_nothing_by_halves(
        identity_through_a_proxy) -> None:  # type: ignore[no-untyped-def]
    suite, proxy = identity_through_a_proxy
    http = Client(suite.gateway)
    statuses: list[int] = []
    created: list[str] = []
    for i in range(45):
        if i == 10:
            proxy.cut()
        if i == 30:
            proxy.heal()
        resp = http.post("/api/identity/accounts", json=person())
        statuses.append(resp.status_code)
        if resp.status_code == 201:
            created.append(resp.get_json()["id"])
            continue
        assert resp.status_code == 503, resp.get_data(as_text=True)
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert resp.get_json()["type"].endswith("/database-unavailable")
        assert resp.headers["Retry-After"] == "5"

    assert statuses[:10] == [201] * 10
    assert statuses[10:30] == [503] * 20  # (the pool's pre-ping finds each connection dead)
    assert statuses[-10:] == [201] * 10  # back by itself, no restart of the service

    with suite.runtimes["identity"].db.transaction() as s:
        accounts = set(s.scalars(text("SELECT id FROM accounts")))
        events = [json.loads(body)["subject"] for body in s.scalars(
            select(outbox.c.body).where(outbox.c.type == REGISTERED))]
    assert set(created) <= accounts
    assert sorted(events) == sorted(accounts)  # one event per account, no ghost, no orphan
