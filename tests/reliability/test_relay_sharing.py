"""RELIABILITY "the outbox and the inbox": several relays of one service share its outbox
(``FOR UPDATE SKIP LOCKED``) without publishing a row twice or leaving one behind."""

from __future__ import annotations

import collections

import pytest
from sqlalchemy import select

from servicekit.db import Database
from servicekit.publishers import PikaPublisher
from servicekit.relay import Relay
from servicekit.tables import outbox
from servicekit.testing import wait_for
from servicekit.topology import Subscription
from tests.reliability.helpers import (
    TimedPublisher,
    declare_subscriptions,
    emit_many,
    queue_depth,
    unsent,
)

pytestmark = pytest.mark.real

TYPE = "reliability.shared.happened"
N = 600


def test_three_relays_publish_each_row_exactly_once(make_dbs, vhost, exchange, workers) -> None:  # type: ignore[no-untyped-def]
    [db] = make_dbs("shared")
    sub = Subscription("rel_shared", (TYPE,))
    declare_subscriptions(vhost, exchange, sub)
    ids = emit_many(db, TYPE, N)
    engines = [Database(db.url) for _ in range(3)]  # as if three processes
    publishers = [TimedPublisher(PikaPublisher(vhost, exchange, confirm_timeout=5))
                  for _ in engines]
    try:
        for i, (engine, publisher) in enumerate(zip(engines, publishers, strict=True)):
            workers.start(f"relay{i}", Relay("shared", engine, publisher, batch_size=25,
                                              poll_interval=0.05).run)
        wait_for(lambda: unsent(db) == 0, timeout=30, message="every row to be sent")
        assert workers.stop() == []
    finally:
        for engine in engines:
            engine.dispose()

    confirmed = collections.Counter(row for p in publishers for call in p.calls
                                    for row in call.confirmed)
    with db.transaction() as s:
        rows = s.execute(select(outbox.c.id, outbox.c.sent_at)).all()
    assert set(confirmed) == {r.id for r in rows} and len(rows) == N
    assert max(confirmed.values()) == 1, "a row was published by two relays"
    assert all(r.sent_at is not None for r in rows)
    assert queue_depth(vhost, sub.queue) == len(ids)  # no copy published twice
