"""R2: an event nobody is bound to is reported as a failure, never silently marked sent."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from servicekit.publishers import KombuPublisher, PikaPublisher
from servicekit.relay import Relay
from servicekit.tables import outbox
from servicekit.topology import Subscription
from tests.reliability.helpers import declare_subscriptions, emit_many, queue_depth

pytestmark = pytest.mark.real

BOUND = "reliability.bound.happened"
NOBODY = "reliability.nobody.listens"


def _rows(db):  # type: ignore[no-untyped-def]
    with db.transaction() as s:
        return {r.type: r for r in s.execute(select(outbox))}


@pytest.mark.parametrize("kind", ["pika", "kombu"])
def test_unroutable_event_is_a_failure_and_stays_in_the_outbox(make_dbs, vhost, exchange,
                                                                kind) -> None:  # type: ignore[no-untyped-def]
    [db] = make_dbs("unroutable")
    sub = Subscription("rel_bound", (BOUND,))
    declare_subscriptions(vhost, exchange, sub)
    emit_many(db, NOBODY, 1)
    emit_many(db, BOUND, 1)
    publisher = (PikaPublisher(vhost, exchange, confirm_timeout=5) if kind == "pika"
                 else KombuPublisher(vhost, exchange, confirm_timeout=5))
    relay = Relay("unroutable", db, publisher)
    try:
        assert relay.run_once() == 1  # only the bound event counts as published
        rows = _rows(db)
        lost = rows[NOBODY]
        assert lost.sent_at is None, "an unroutable event was marked sent"
        assert lost.attempts >= 1
        assert (lost.last_error or "").startswith("unroutable"), lost.last_error
        assert lost.available_at > lost.created_at  # backs off, does not hot-loop
        assert rows[BOUND].sent_at is not None and rows[BOUND].last_error is None
        assert queue_depth(vhost, sub.queue) == 1

        # tried again later: still a failure, the attempts go up, still never sent
        with db.transaction() as s:
            s.execute(outbox.update().where(outbox.c.type == NOBODY)
                      .values(available_at=lost.created_at))
        assert relay.run_once() == 0
        again = _rows(db)[NOBODY]
        assert again.sent_at is None
        assert again.attempts == lost.attempts + 1
        assert (again.last_error or "").startswith("unroutable")
    finally:
        publisher.close()
