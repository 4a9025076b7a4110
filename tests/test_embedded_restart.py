"""The embedded tier across a restart: kombu's in-memory bus keeps nothing when its process
ends, so an event the last run had published but not yet handed to its consumer is published
again by the next run (``Suite.republish_last_run``), and one every consumer had handled is
not (a restart after a long demo does not replay the demo). The end of a process is played
by emptying the transport's queues between two suites on the same data folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu.transport import memory
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from werkzeug.test import Client

from ecourt.embedded import Suite
from servicekit.tables import inbox, outbox
from servicekit.testing import unique, wait_for
from tests.reliability.helpers import person

REGISTERED = "identity.account.registered"
SMS_REQUESTED = "delivery.sms.requested"


@pytest.fixture
def restart(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """``restart(consumers=True)``: stop the running suite, lose the bus as a process end
    would, and start a new suite on the same data folder."""
    running: list[Suite] = []
    prefix = unique("restart") + "."  # this test's queues only: other suites share the bus

    def start(consumers: bool = True) -> Suite:
        if running:
            running.pop().stop()
            for name in [q for q in memory.Channel.queues if q.startswith(prefix)]:
                del memory.Channel.queues[name]
        suite = Suite(tmp_path / "data", scheduler_interval=0, queue_prefix=prefix,
                      exchange=unique("restart.events"))
        suite.start_workers(consumers=consumers)
        running.append(suite)
        return suite

    yield start
    for suite in running:
        suite.stop()


def _registered_event(suite: Suite, account: str) -> tuple[str, bool]:
    """identity's event for ``account``: its id and whether it is marked sent."""
    with suite.runtimes["identity"].db.transaction() as s:
        rows = s.execute(select(outbox.c.event_id, outbox.c.body, outbox.c.sent_at)
                         .where(outbox.c.type == REGISTERED)).all()
    [(event_id, sent)] = [(r.event_id, r.sent_at is not None) for r in rows
                          if json.loads(r.body)["subject"] == account]
    return event_id, sent


def _handled(suite: Suite, event_id: str) -> int:
    with suite.runtimes["delivery"].db.transaction() as s:
        return s.scalar(select(func.count()).select_from(inbox).where(
            inbox.c.consumer == "delivery", inbox.c.event_id == event_id)) or 0


def _notifier_handled(suite: Suite) -> int:
    with suite.runtimes["notifier"].db.transaction() as s:
        return s.scalar(select(func.count()).select_from(inbox).where(
            inbox.c.consumer == "notifier")) or 0


def _sms_requests(suite: Suite) -> int:
    with suite.runtimes["delivery"].db.transaction() as s:
        return s.scalar(select(func.count()).select_from(outbox).where(
            outbox.c.type == SMS_REQUESTED)) or 0


def _duplicates() -> float:
    return REGISTRY.get_sample_value("events_consumed_total", {
        "service": "delivery", "type": REGISTERED, "outcome": "duplicate"}) or 0.0


def test_an_event_published_but_not_consumed_before_a_restart_is_not_lost(restart) -> None:  # type: ignore[no-untyped-def]
    first = restart(consumers=False)  # published into the bus, nobody takes it off
    resp = Client(first.gateway).post("/api/identity/accounts", json=person())
    assert resp.status_code == 201
    account = resp.get_json()["id"]
    wait_for(lambda: _registered_event(first, account)[1], timeout=15,
             message="the relay to publish the registration")
    event_id, _ = _registered_event(first, account)

    second = restart()  # the bus of the first run is gone
    assert second.republished >= 1
    wait_for(lambda: _handled(second, event_id) == 1, timeout=30,
             message="the registration to reach delivery after the restart")
    assert _sms_requests(second) == 1
    wait_for(lambda: _notifier_handled(second) == 1, timeout=30,
             message="the notifier to take delivery's SMS request")

    before = _duplicates()
    third = restart()  # every consumer had handled every event: nothing to send again
    assert third.republished == 0
    assert _handled(third, event_id) == 1
    assert _sms_requests(third) == 1
    assert _registered_event(third, account)[1]
    assert _duplicates() == before


def test_a_restart_sends_again_only_what_a_consumer_lacks_and_every_dead_letter(
        tmp_path: Path) -> None:
    """Rows the last run sent: a registration delivery has handled stays sent; one it has not
    is sent again; an event nobody consumes stays sent; a row sent to one queue (a dead
    letter, kept only in memory) is sent again."""
    from datetime import timedelta

    from sqlalchemy import update

    from ecourt.embedded import RUN_MARKER
    from servicekit.db import utcnow
    from servicekit.envelope import CloudEvent
    from servicekit.outbox import enqueue
    from servicekit.publishers import QUEUE, TOPIC

    suite = Suite(tmp_path / "data", scheduler_interval=0)
    (tmp_path / "data" / RUN_MARKER).write_text(
        (utcnow() - timedelta(minutes=5)).isoformat(), encoding="utf-8")
    handled, lost, dead = (CloudEvent(REGISTERED, "/identity", {"n": n}) for n in range(3))
    unheard = CloudEvent("identity.nobody.listens", "/identity", {})
    with suite.runtimes["identity"].db.transaction() as s:
        for event in (handled, lost, unheard):
            enqueue(s, event, exchange=TOPIC, routing_key=event.type)
        enqueue(s, dead, exchange=QUEUE, routing_key="delivery.dlq")
        s.execute(update(outbox).values(sent_at=utcnow()))
    with suite.runtimes["delivery"].db.transaction() as s:
        s.execute(inbox.insert().values(consumer="delivery", event_id=handled.id,
                                        type=REGISTERED, received_at=utcnow()))
    try:
        assert suite.republish_last_run() == 2
        with suite.runtimes["identity"].db.transaction() as s:
            unsent = set(s.scalars(select(outbox.c.event_id).where(outbox.c.sent_at.is_(None))))
        assert unsent == {lost.id, dead.id}
    finally:
        suite.stop()
