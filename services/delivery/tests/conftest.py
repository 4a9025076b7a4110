"""Fixtures: a delivery runtime and its app (built as the suite builds it) on a fresh SQLite
file and — marked ``real`` — on a fresh PostgreSQL database, tokens of its own signing key, and
helpers to put notices in an account's inbox and read it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from ecourt.runtime import make_runtime
from servicekit.config import Settings
from servicekit.service import Runtime
from servicekit.testing import pg_databases
from servicekit.tokens import SigningKey, TokenVerifier
from services.delivery import usecases
from services.delivery.app import SERVICE
from services.delivery.models import Notification

T0 = datetime(2026, 3, 2, 1, tzinfo=UTC)


class Inbox:
    """delivery's app and database, with the calls the tests repeat."""

    def __init__(self, rt: Runtime, key: SigningKey) -> None:
        self.rt, self.key = rt, key
        self.client: FlaskClient = SERVICE.build_app(rt).test_client()  # type: ignore[misc]

    def token(self, sub: str, *roles: str, court: str | None = None,
              ttl: int = 900) -> dict[str, str]:
        """The headers of a signed-in ``sub`` (a party unless ``roles`` say otherwise)."""
        claims: dict[str, Any] = {"sub": sub, "roles": list(roles or ("party",))}
        if court is not None:
            claims["court"] = court
        return {"Authorization": f"Bearer {self.key.sign(claims, ttl=ttl)}"}

    def notify(self, account_id: str, title: str = "通知") -> str:
        """A notice in ``account_id``'s inbox, written as the event handlers write one; its
        id."""
        with self.rt.db.transaction() as session:
            return usecases.notify(session, account_id=account_id, category="application",
                                   title=title, body="正文",
                                   source_event_id=str(uuid.uuid4())).id

    def add(self, account_id: str, count: int, read: int = 0,
            at: datetime | None = None) -> list[str]:
        """``count`` notifications a minute apart from ``at`` (the first ``read`` of them
        read); all at ``at`` when it is given, so they tie."""
        ids = []
        with self.rt.db.transaction() as session:
            for n in range(count):
                note = Notification(
                    id=str(uuid.uuid4()), account_id=account_id, category="application",
                    title=f"通知{n}", body="正文", source_event_id=str(uuid.uuid4()),
                    created_at=at or T0 + timedelta(minutes=n),
                    read_at=T0 if n < read else None)
                session.add(note)
                ids.append(note.id)
        return ids

    def get(self, account_id: str, **query: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """``account_id``'s inbox (a page of it, and ``X-Pagination``), read by them."""
        resp = self.client.get("/inbox", headers=self.token(account_id), query_string=query)
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json(), json.loads(resp.headers["X-Pagination"])


def _inbox(url: str) -> Iterator[Inbox]:
    key = SigningKey.generate()
    rt = make_runtime(SERVICE, Settings.from_env("delivery", database_url=url),
                      TokenVerifier(lambda: {"keys": [key.jwk()]}))
    try:
        yield Inbox(rt, key)
    finally:
        rt.db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.real)])
def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inbox]:
    if request.param == "sqlite":
        yield from _inbox(f"sqlite:///{tmp_path}/delivery.db")
        return
    with pg_databases(["delivery"]) as urls:
        yield from _inbox(urls["delivery"])
