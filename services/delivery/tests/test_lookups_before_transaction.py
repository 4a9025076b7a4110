"""delivery asks identity who its recipients are (a court's reviewers, a rung of the
escalation ladder) and their phone numbers before its consumer's transaction begins: a slow
identity holds no connection of delivery's pool, nor on SQLite the write lock every other
write of delivery (a user reading a notice) waits for. The notices and SMS requests written
are the same as before. The look-ups of one event that do not depend on each other (each
recipient's phone, both halves of a combined handler) are made at once."""

from __future__ import annotations

import collections
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ecourt.runtime import make_runtime
from servicekit.config import Settings
from servicekit.db import Database
from servicekit.envelope import CloudEvent
from servicekit.sealed import unseal
from servicekit.service import Runtime
from servicekit.tables import outbox
from servicekit.testing import InMemoryConsumer, pg_databases, transaction_open, wait_for
from services.delivery import messages
from services.delivery.app import SERVICE
from services.delivery.handlers import WELCOME_SMS, WELCOME_TITLE
from services.delivery.models import Notification

PARTY, LAWYER, REVIEWER_1, REVIEWER_2, HEAD = (str(uuid.uuid4()) for _ in range(5))
PHONES = {account: f"1380000000{n}" for n, account in
          enumerate((PARTY, LAWYER, REVIEWER_1, REVIEWER_2, HEAD))}
STAFF = {"/internal/staff?court=gz&role=registry_reviewer": [REVIEWER_1, REVIEWER_2],
         "/internal/staff?court=gz&role=division_head&department=civil": [HEAD]}
COURT = {"court": "gz", "court_name": "广州市中级人民法院"}
#: the consumer's setting: how many look-ups it makes at once
PREPARE_THREADS = "ECOURT_CONSUMER_PREPARE_THREADS"
CASE = {**COURT, "case_number": "（2026）粤01民初1号", "service_number": "S-0001"}


class Identity:
    """Identity's internal API as delivery's client sees it (an HTTP service, not a
    database): each answer first notes whether delivery's database had a transaction open
    while identity was being asked."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.asked: list[tuple[str, bool]] = []

    def get_json(self, service: str, path: str) -> dict[str, Any]:
        assert service == "identity"
        self.asked.append((path, transaction_open(self.db)))
        if path in STAFF:
            return {"items": [{"account_id": account} for account in STAFF[path]]}
        return {"phone": PHONES[path.split("/")[3]]}


class MeetingIdentity(Identity):
    """An identity whose contact look-ups each wait until ``parties`` of them are being made
    at once (a barrier that breaks, failing the look-up, if they never are)."""

    def __init__(self, db: Database, parties: int) -> None:
        super().__init__(db)
        self.barrier = threading.Barrier(parties, timeout=10)
        self.broken: list[str] = []

    def get_json(self, service: str, path: str) -> dict[str, Any]:
        if path not in STAFF:
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                self.broken.append(path)
                raise
        return super().get_json(service, path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.real)])
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    def runtime(url: str) -> Iterator[Runtime]:
        built = make_runtime(SERVICE, Settings.from_env("delivery", database_url=url), None)
        try:
            yield built
        finally:
            built.db.dispose()

    if request.param == "sqlite":
        yield from runtime(f"sqlite:///{tmp_path}/delivery.db")
        return
    with pg_databases(["delivery"]) as urls:
        yield from runtime(urls["delivery"])


def _sms_requests(rt: Runtime) -> list[tuple[str, str, str, str]]:
    with rt.db.transaction(reads_only=True) as session:
        bodies = session.scalars(select(outbox.c.body).where(
            outbox.c.type == "delivery.sms.requested").order_by(outbox.c.id))
        data = [json.loads(body)["data"] for body in bodies]
    return [(d["account_id"], unseal(d["phone_sealed"], rt.settings.service_secret),
             d["template"], d["text"]) for d in data]


def _notices(rt: Runtime) -> list[tuple[str, str, str, str]]:
    with rt.db.transaction(reads_only=True) as session:
        return [(n.account_id, n.category, n.title, n.body)
                for n in session.scalars(select(Notification))]


def test_identity_is_asked_outside_the_transaction_and_the_same_notices_are_sent(
        rt: Runtime) -> None:
    """Failed before: every look-up ran inside the consumer's transaction (on SQLite another
    connection could not take the write lock; on PostgreSQL a pooled connection was out)."""
    identity = Identity(rt.db)
    rt.clients = identity
    org = {**COURT, "name": "某某科技有限公司", "review_deadline": "2026-03-09T00:00:00+00:00"}
    overdue = {**CASE, "level": "division_head", "department": "civil", "days_overdue": 3,
               "kind": "effectiveness_certificate"}
    binding = {**CASE, "lawyer_account_id": LAWYER, "party_account_id": PARTY,
               "party_name": "张三", "lawyer_name": "李四"}
    events = [CloudEvent("identity.account.registered", "/identity",
                         {"account_id": PARTY, "kind": "individual"}),
              CloudEvent("identity.organization.registered", "/identity", org),
              CloudEvent("matters.application.overdue", "/matters", overdue),
              CloudEvent("matters.binding.approved", "/matters", binding)]

    with InMemoryConsumer("delivery", rt.db, SERVICE.handlers(rt)) as consuming:
        consuming.publish(*events)
        # every look-up made before reading the inbox: that read is a transaction too
        wait_for(lambda: len(identity.asked) == 8, message="identity asked")
        wait_for(lambda: consuming.handled() == {e.id for e in events},
                 message="every event handled")

    assert identity.asked, "identity was asked"
    assert [path for path, open_ in identity.asked if open_] == []
    assert sorted(path for path, _ in identity.asked) == sorted(
        [*STAFF, *(f"/internal/accounts/{a}/contact"
                   for a in (PARTY, REVIEWER_1, REVIEWER_2, HEAD, LAWYER, PARTY))])

    told = [(PARTY, "account", (WELCOME_TITLE, "您的账号已注册成功。", WELCOME_SMS),
             "account_registered")]
    told += [(r, "application", messages.organization_registered(org),
              "organization_registered") for r in (REVIEWER_1, REVIEWER_2)]
    told += [(HEAD, "application", messages.overdue(overdue), "application_overdue"),
             (LAWYER, "application", messages.binding_approved_lawyer(binding),
              "binding_approved"),
             (PARTY, "application", messages.binding_approved_party(binding),
              "binding_approved_party")]
    assert collections.Counter(_notices(rt)) == collections.Counter(
        (account, category, title, body) for account, category, (title, body, _), _ in told)
    assert collections.Counter(_sms_requests(rt)) == collections.Counter(
        (account, PHONES[account], template, sms) for account, _, (_, _, sms), template in told)


def test_the_look_ups_of_one_event_are_made_at_once(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two reviewers' phones, and the lawyer's and the party's of a binding (two handlers
    combined): each pair met in a barrier of two, so it was asked at once, on the consumer's
    two prepare threads. Failed before: one after the other, the first waited alone until
    the barrier broke."""
    monkeypatch.setenv(PREPARE_THREADS, "2")
    identity = MeetingIdentity(rt.db, parties=2)
    rt.clients = identity
    org = {**COURT, "name": "某某科技有限公司", "review_deadline": "2026-03-09T00:00:00+00:00"}
    binding = {**CASE, "lawyer_account_id": LAWYER, "party_account_id": PARTY,
               "party_name": "张三", "lawyer_name": "李四"}
    events = [CloudEvent("identity.organization.registered", "/identity", org),
              CloudEvent("matters.binding.approved", "/matters", binding)]

    with InMemoryConsumer("delivery", rt.db, SERVICE.handlers(rt)) as consuming:
        for event in events:  # one at a time: only the event's own look-ups can meet
            consuming.publish(event)
            wait_for(lambda event=event: identity.broken or event.id in consuming.handled(),
                     timeout=30, message="the event handled")
            assert identity.broken == []

    assert [(account, template) for account, _, template, _ in _sms_requests(rt)] == [
        (REVIEWER_1, "organization_registered"), (REVIEWER_2, "organization_registered"),
        (LAWYER, "binding_approved"), (PARTY, "binding_approved_party")]
