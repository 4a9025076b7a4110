"""The audit trail's own guarantees, on SQLite and on the real PostgreSQL: entries are chained in
order by the sealer, the database refuses to change or delete them, a rewrite behind the
triggers' back breaks the chain, concurrent sealers build one chain, and ``ecourt audit``
verifies it. (What the services record is in ``tests/test_audit_trail.py``.)"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import DBAPIError

from ecourt import registry
from servicekit import audit, context, migrations
from servicekit.chain import shown
from servicekit.db import Database
from servicekit.tables import audit_trail
from servicekit.testing import pg_databases

ROOT = Path(__file__).resolve().parents[2]
#: the kit's tables come with every service's migrations; filing has nothing else yet
SERVICE = "filing"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.real)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'filing.db'}"
        migrations.upgrade(registry.get(SERVICE).migrations, url)
        yield url
        return
    yield from _postgres()


def _postgres() -> Iterator[str]:
    with pg_databases([SERVICE]) as urls:
        migrations.upgrade(registry.get(SERVICE).migrations, urls[SERVICE])
        yield urls[SERVICE]


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _postgres()


@pytest.fixture
def db(url: str) -> Iterator[Database]:
    database = Database(url)
    yield database
    database.dispose()


def write(db: Database, count: int, action: str = "case.changed") -> None:
    actor = audit.Actor("acct-1", ("judge",), "203.0.113.9")
    with audit.acting(actor), context.bound("req-abc"), db.transaction() as session:
        for n in range(count):
            audit.record(session, action, subject=f"case:{n}", detail={"n": n})


def entries(db: Database) -> list:
    with db.transaction() as session:
        return list(session.execute(select(audit_trail).order_by(audit_trail.c.id)))


def seal_all(db: Database) -> int:
    total = 0
    while (count := audit.seal(db, limit=50)) > 0:
        total += count
    return total


def test_entries_name_who_when_where_and_are_chained_in_order(db: Database) -> None:
    write(db, 3)
    first = entries(db)
    assert [(r.actor, r.roles, r.source, r.request_id, r.action, r.subject, r.outcome)
            for r in first] == [("acct-1", "judge", "203.0.113.9", "req-abc", "case.changed",
                                 f"case:{n}", "done") for n in range(3)]
    assert all(r.entry_hash is None and r.at.tzinfo is not None for r in first)
    assert seal_all(db) == 3
    write(db, 2)  # a second batch continues the chain
    assert seal_all(db) == 2
    rows = entries(db)
    assert [r.chain_pos for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == "0" * 64
    assert all(later.prev_hash == earlier.entry_hash for earlier, later in pairwise(rows))
    with db.transaction() as session:
        check = audit.verify(session)
        assert audit.unsealed(session) == 0
    assert check.ok and check.entries == 5 and check.head_hash == rows[-1].entry_hash


def test_a_system_entry_names_the_event_it_handled_and_masks_personal_data(db: Database) -> None:
    with context.bound("req-1", causation="evt-42"), db.transaction() as session:
        audit.record(session, "delivery.created", subject="delivery:d1",
                     detail={"note": "to 13812345678, ID 110101199003071234"})
    row = entries(db)[0]
    assert row.actor == "system" and row.request_id == "req-1"
    assert '"cause": "evt-42"' in row.detail
    assert "13812345678" not in row.detail and "110101199003071234" not in row.detail


def refused(db: Database, statement: str) -> bool:
    try:
        with db.transaction() as session:
            session.execute(text(statement))
    except DBAPIError as exc:
        assert "append-only" in str(exc)
        return True
    return False


def test_the_database_refuses_to_change_or_delete_an_entry(db: Database) -> None:
    write(db, 2)
    seal_all(db)
    write(db, 1)  # entry 3 stays unsealed
    assert refused(db, "UPDATE audit_trail SET detail = '{}' WHERE id = 1")
    assert refused(db, "UPDATE audit_trail SET entry_hash = NULL WHERE id = 1")
    assert refused(db, "UPDATE audit_trail SET entry_hash = 'x' WHERE id = 2")  # resealing
    assert refused(db, "DELETE FROM audit_trail WHERE id = 1")
    assert refused(db, "UPDATE audit_trail SET actor = 'someone-else' WHERE id = 3")
    assert refused(db, "UPDATE audit_trail SET entry_hash = 'x' WHERE id = 3")  # half sealed
    assert refused(db, "DELETE FROM audit_trail WHERE id = 3")
    if db.is_postgres:
        assert refused(db, "TRUNCATE audit_trail")
    assert len(entries(db)) == 3
    assert seal_all(db) == 1  # sealing, the one change allowed, still works
    with db.transaction() as session:
        assert audit.verify(session).ok


def _drop_guards(db: Database) -> None:
    """What an attacker with the owner's rights would do first."""
    with db.transaction() as session:
        if db.is_postgres:
            session.execute(text("DROP TRIGGER audit_trail_append_only ON audit_trail"))
        else:
            session.execute(text("DROP TRIGGER audit_trail_no_update"))
            session.execute(text("DROP TRIGGER audit_trail_no_delete"))


def test_a_rewrite_behind_the_triggers_back_breaks_the_chain(db: Database) -> None:
    write(db, 4)
    seal_all(db)
    _drop_guards(db)
    with db.transaction() as session:
        session.execute(update(audit_trail).where(audit_trail.c.id == 2)
                        .values(actor="someone-else"))
        check = audit.verify(session)
    assert not check.ok and check.broken_at == 2 and "altered" in (check.problem or "")
    with db.transaction() as session:
        session.execute(update(audit_trail).where(audit_trail.c.id == 2).values(actor="acct-1"))
        assert audit.verify(session).ok
        session.execute(text("DELETE FROM audit_trail WHERE id = 3"))
        check = audit.verify(session)
    assert not check.ok and check.broken_at == 4 and "missing" in (check.problem or "")


def test_an_entry_hidden_from_the_sealer_breaks_the_check(db: Database) -> None:
    """A hash with no place in the chain would keep an entry out of both the sealer's and the
    check's sight; the triggers refuse it, and the check reports it if they were dropped."""
    write(db, 2)
    seal_all(db)
    write(db, 1)
    _drop_guards(db)
    with db.transaction() as session:
        session.execute(update(audit_trail).where(audit_trail.c.entry_hash.is_(None))
                        .values(entry_hash="0" * 64))
        check = audit.verify(session)
    assert not check.ok and check.entries == 2 and "not in the chain" in (check.problem or "")


def test_an_entry_inserted_back_dated_is_sealed_but_listed_as_late(db: Database) -> None:
    """Inserting is allowed, so the chain cannot prove *when*; the gap to its sealing shows."""
    write(db, 1)
    with db.transaction() as session:
        old = audit.entry("case.changed", subject="case:old")
        old["at"] -= timedelta(days=30)
        session.execute(insert(audit_trail), [old])
    seal_all(db)
    with db.transaction() as session:
        assert audit.verify(session).ok
        assert audit.sealed_late(session) == [2]
        assert audit.sealed_late(session, after=timedelta(days=31)) == []


@pytest.mark.real
def test_concurrent_writers_and_sealers_build_one_chain(pg_url: str) -> None:
    """PostgreSQL only: SQLite has one writer, so there is no concurrency to test."""
    db = Database(pg_url, pool_size=12)
    try:
        stop = threading.Event()
        errors: list[BaseException] = []

        def sealing() -> None:
            try:
                while not stop.is_set():
                    audit.seal(db, limit=7)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        sealers = [threading.Thread(target=sealing) for _ in range(3)]
        writers = [threading.Thread(target=write, args=(db, 1)) for _ in range(120)]
        for thread in sealers + writers:
            thread.start()
        for thread in writers:
            thread.join()
        stop.set()
        for thread in sealers:
            thread.join()
        assert not errors
        seal_all(db)
        with db.transaction() as session:
            check = audit.verify(session)
        assert check.ok and check.entries == 120
    finally:
        db.dispose()


@pytest.mark.real
def test_an_entry_committed_late_is_sealed_at_the_end_of_the_chain(pg_url: str) -> None:
    """PostgreSQL only: on SQLite's one writer an earlier id cannot commit later."""
    db = Database(pg_url)
    try:
        late = db.transaction()
        session = late.__enter__()
        audit.record(session, "case.changed", subject="case:late")  # takes the lower id
        session.flush()
        write(db, 1)  # commits first, with the higher id
        assert seal_all(db) == 1
        late.__exit__(None, None, None)
        assert seal_all(db) == 1
        rows = {r.subject: r for r in entries(db)}
        assert rows["case:late"].id < rows["case:0"].id
        assert (rows["case:0"].chain_pos, rows["case:late"].chain_pos) == (1, 2)
        with db.transaction() as session:
            assert audit.verify(session).ok
    finally:
        db.dispose()


def test_ecourt_audit_seals_verifies_shows_and_reports_a_broken_chain(db: Database,
                                                                       url: str) -> None:
    write(db, 3)
    env = {**os.environ, "FILING_DATABASE_URL": url, "ECOURT_LOG_LEVEL": "WARNING"}

    def ecourt(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ecourt.cli", "audit", *args], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=120,
                              check=False)

    waiting = ecourt("verify", SERVICE)
    assert waiting.returncode == 0 and "0 entries chained" in waiting.stdout \
        and "3 waiting" in waiting.stdout
    assert "sealed 3 entries" in ecourt("seal", SERVICE).stdout
    verified = ecourt("verify", SERVICE)
    assert verified.returncode == 0 and "3 entries chained" in verified.stdout
    assert f"head {shown(entries(db)[-1].entry_hash)} " in verified.stdout  # as logged
    history = ecourt("show", SERVICE, "--subject", "case:1").stdout.splitlines()
    assert len(history) == 1 and \
        "\tacct-1\t203.0.113.9\tcase.changed\tcase:1\tdone\t" in history[0]
    _drop_guards(db)
    with db.transaction() as session:
        session.execute(update(audit_trail).where(audit_trail.c.id == 1).values(outcome="x"))
    broken = ecourt("verify", SERVICE)
    assert broken.returncode == 1 and "BROKEN at position 1" in broken.stderr


def test_a_bulk_change_of_an_audited_model_is_refused() -> None:
    """It would skip the unit of work, and so the entry."""
    from sqlalchemy import delete

    from ecourt.runtime import make_runtime
    from servicekit.config import Settings
    from servicekit.tokens import SigningKey, TokenVerifier
    from services.delivery.app import SERVICE as DELIVERY
    from services.delivery.models import Notification

    key = SigningKey.generate()
    rt = make_runtime(DELIVERY, Settings.from_env("delivery", database_url="sqlite://"),
                      TokenVerifier(lambda: {"keys": [key.jwk()]}))
    with pytest.raises(TypeError, match="audited"), rt.db.transaction() as session:
        session.execute(update(Notification).values(title="rewritten"))
    with pytest.raises(TypeError, match="audited"), rt.db.transaction() as session:
        session.execute(delete(Notification))


def test_a_refused_request_is_recorded_with_its_unmatched_path_masked(tmp_path: Path) -> None:
    """A bad token is refused before routing, so the path is the client's own text."""
    from ecourt.runtime import make_runtime
    from servicekit.config import Settings
    from servicekit.tokens import SigningKey, TokenVerifier
    from services.delivery.app import SERVICE as DELIVERY

    key = SigningKey.generate()
    rt = make_runtime(DELIVERY, Settings.from_env(
        "delivery", database_url=f"sqlite:///{tmp_path / 'delivery.db'}"),
        TokenVerifier(lambda: {"keys": [key.jwk()]}))
    client = DELIVERY.build_app(rt).test_client()  # type: ignore[misc]
    resp = client.get("/lookup/13812345678", headers={"Authorization": "Bearer not-a-token"},
                      environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert resp.status_code == 401
    [row] = entries(rt.db)
    assert (row.actor, row.source, row.action, row.outcome) == (
        "anonymous", "198.51.100.9", "auth.rejected", "denied")
    assert row.subject.startswith("route:GET /lookup/138") and "13812345678" not in row.subject
    assert "13812345678" not in row.detail and row.request_id == resp.headers["X-Request-ID"]
