"""The pipelined relay (PostgreSQL + PikaPublisher): while the broker confirms one batch, the
next is claimed in a second transaction and written. Rows are still published once per relay
pass, shared between relays without overlap, and kept when the broker fails mid-pipeline."""

from __future__ import annotations

import collections
from typing import Any

import pytest
from sqlalchemy import select

from servicekit.db import Database
from servicekit.publishers import BatchResult, PikaPublisher, PublishError, Ticket
from servicekit.relay import Relay
from servicekit.tables import outbox
from servicekit.testing import wait_for
from servicekit.topology import Subscription
from tests.reliability.helpers import declare_subscriptions, emit_many, queue_depth, unsent

pytestmark = pytest.mark.real

TYPE = "reliability.pipeline.happened"


class RecordingPublisher(PikaPublisher):
    """A PikaPublisher that records every settled batch and how many were outstanding."""

    def __init__(self, *args: Any, fail_on_collect: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.results: list[BatchResult] = []
        self.most_outstanding = 0
        self.fail_on_collect = fail_on_collect

    def send(self, messages):  # type: ignore[no-untyped-def]
        ticket = super().send(messages)
        self.most_outstanding = max(self.most_outstanding, len(self._open))
        return ticket

    def collect(self, ticket: Ticket) -> BatchResult:
        if self.fail_on_collect is not None and len(self.results) + 1 == self.fail_on_collect:
            self.close()
            raise PublishError("broker gone (test)")
        result = super().collect(ticket)
        self.results.append(result)
        return result

    def confirmed(self) -> list[int]:
        return [row for r in self.results for row in r.confirmed]


def _rows(db):  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        return s.execute(select(outbox.c.id, outbox.c.sent_at, outbox.c.attempts)).all()


def test_one_pass_pipelines_full_batches_until_the_outbox_is_drained(  # type: ignore[no-untyped-def]
        make_dbs, vhost, exchange) -> None:
    [db] = make_dbs("pipeline")
    sub = Subscription("rel_pipeline", (TYPE,))
    declare_subscriptions(vhost, exchange, sub)
    emit_many(db, TYPE, 450)
    publisher = RecordingPublisher(vhost, exchange, confirm_timeout=5)
    try:
        relay = Relay("pipeline", db, publisher, batch_size=100)
        assert relay.pipelined
        assert relay.run_once() == 450
        assert relay.run_once() == 0
    finally:
        publisher.close()
    assert [len(r.confirmed) for r in publisher.results] == [100, 100, 100, 100, 50]
    assert publisher.most_outstanding == 2  # the next batch was written before this one settled
    assert sorted(publisher.confirmed()) == sorted(r.id for r in _rows(db))
    assert all(r.sent_at is not None for r in _rows(db))
    assert queue_depth(vhost, sub.queue) == 450


def test_pipelined_relays_sharing_an_outbox_publish_each_row_once(  # type: ignore[no-untyped-def]
        make_dbs, vhost, exchange, workers) -> None:
    [db] = make_dbs("pipeline_shared")
    sub = Subscription("rel_pipeline_shared", (TYPE,))
    declare_subscriptions(vhost, exchange, sub)
    n = 1500
    emit_many(db, TYPE, n)
    publishers = [RecordingPublisher(vhost, exchange, confirm_timeout=5) for _ in range(3)]
    engines = [Database(db.url) for _ in publishers]  # as if three processes
    try:
        for i, (engine, publisher) in enumerate(zip(engines, publishers, strict=True)):
            relay = Relay("shared", engine, publisher, batch_size=40, poll_interval=0.05)
            assert relay.pipelined
            workers.start(f"relay{i}", relay.run)
        wait_for(lambda: unsent(db) == 0, timeout=60, message="every row to be sent")
        assert workers.stop() == []
    finally:
        for engine in engines:
            engine.dispose()
    confirmed = collections.Counter(row for p in publishers for row in p.confirmed())
    rows = _rows(db)
    assert set(confirmed) == {r.id for r in rows} and len(rows) == n
    assert max(confirmed.values()) == 1, "a row was published by two relays, or twice by one"
    assert max(p.most_outstanding for p in publishers) == 2
    assert queue_depth(vhost, sub.queue) == n


def test_a_broker_failure_mid_pipeline_keeps_every_unconfirmed_row(  # type: ignore[no-untyped-def]
        make_dbs, vhost, exchange) -> None:
    [db] = make_dbs("pipeline_fail")
    sub = Subscription("rel_pipeline_fail", (TYPE,))
    declare_subscriptions(vhost, exchange, sub)
    emit_many(db, TYPE, 300)
    failing = RecordingPublisher(vhost, exchange, confirm_timeout=5, fail_on_collect=2)
    try:
        with pytest.raises(PublishError):
            Relay("pipeline", db, failing, batch_size=100).run_once()
    finally:
        failing.close()
    rows = _rows(db)
    sent = {r.id for r in rows if r.sent_at is not None}
    assert sent == set(failing.confirmed()) and len(sent) == 100  # the first batch only
    assert all(r.attempts == 0 for r in rows)  # an outage is no refusal: no row backoff

    again = RecordingPublisher(vhost, exchange, confirm_timeout=5)
    try:
        assert Relay("pipeline", db, again, batch_size=100).run_once() == 200
    finally:
        again.close()
    assert unsent(db) == 0
    assert not set(again.confirmed()) & sent
    # every row reached the queue at least once; a batch written before the failure may have
    # reached it twice, and the consumers' inbox absorbs the copy
    assert queue_depth(vhost, sub.queue) >= 300
