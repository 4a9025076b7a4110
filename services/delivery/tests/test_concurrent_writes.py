"""Two requests writing the same notification at once, on PostgreSQL (row locks decide here;
SQLite takes its one write lock at BEGIN and cannot race).

Reading a notification is the addressee signing for it: its ``read_at`` is the time of
sign-off, and only the first one counts. Marking it read used to read the row without a lock,
so a second "read" in flight (two tabs, a double click) found it unread too and overwrote the
first sign-off's time with its own, writing a second sign-off into the audit trail.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, func, select, text

from ecourt.runtime import make_runtime
from servicekit.config import Settings
from servicekit.service import Runtime
from servicekit.tables import audit_trail
from servicekit.testing import pg_databases
from servicekit.tokens import SigningKey, TokenVerifier
from services.delivery.app import SERVICE
from services.delivery.models import Notification

pytestmark = pytest.mark.real
ME = str(uuid.uuid4())
FIRST_READ = datetime(2026, 3, 2, 9, 30, 15, tzinfo=UTC)


@pytest.fixture
def pg() -> Iterator[tuple[Runtime, FlaskClient, SigningKey, str]]:
    key = SigningKey.generate()
    with pg_databases(["delivery"]) as urls:
        rt = make_runtime(SERVICE, Settings.from_env("delivery", database_url=urls["delivery"]),
                          TokenVerifier(lambda: {"keys": [key.jwk()]}))
        try:
            client = SERVICE.build_app(rt).test_client()  # type: ignore[misc]
            yield rt, client, key, urls["delivery"]
        finally:
            rt.db.dispose()


def test_a_notification_read_twice_at_once_keeps_the_first_sign_off(
        pg: tuple[Runtime, FlaskClient, SigningKey, str]) -> None:
    rt, client, key, url = pg
    with rt.db.transaction() as session:
        note = Notification(id=str(uuid.uuid4()), account_id=ME, category="application",
                            title="您的生效证明申请已办结", body="正文",
                            source_event_id=str(uuid.uuid4()),
                            created_at=datetime(2026, 3, 2, 1, tzinfo=UTC))
        session.add(note)
    token = {"Authorization": f"Bearer {key.sign({'sub': ME, 'roles': ['party']}, ttl=900)}"}

    engine = create_engine(url)
    try:
        with engine.connect() as first, ThreadPoolExecutor(1) as pool:
            tx = first.begin()  # the first "read" (another tab), in progress
            first.execute(text("SELECT id FROM notifications WHERE id = :id FOR UPDATE"),
                          {"id": note.id})
            second = pool.submit(client.post, f"/inbox/{note.id}/read", headers=token)
            time.sleep(0.5)  # the second reaches the row the first holds
            first.execute(text("UPDATE notifications SET read_at = :at WHERE id = :id"),
                          {"at": FIRST_READ, "id": note.id})
            tx.commit()
            resp = second.result(timeout=30)
    finally:
        engine.dispose()

    assert resp.status_code == 200, resp.get_json()
    assert datetime.fromisoformat(resp.get_json()["read_at"]) == FIRST_READ
    with rt.db.transaction() as session:
        assert session.get(Notification, note.id).read_at == FIRST_READ  # type: ignore[union-attr]
        changed = session.scalar(select(func.count()).select_from(audit_trail).where(
            audit_trail.c.subject == f"delivery:{note.id}",
            audit_trail.c.action == "delivery.changed"))
    assert changed == 0  # the first sign-off was written by the holder; no second one
