"""How the consumer reads, handles and acks its batches, against the real broker and database:
the next batch is read while one is handled, a batch split over several workers keeps each
subject's events in order and handles every event once, one ack settles a batch without
touching the message it rejected, a clean stop acks the batch in hand, and the ``prepare`` of
a batch's two-phase handlers run at once, within the consumer's bound."""

from __future__ import annotations

import collections
import threading

import pytest

from servicekit.consumer import EventConsumer, TwoPhaseHandler
from servicekit.envelope import CloudEvent
from servicekit.publishers import TOPIC, PikaPublisher
from servicekit.testing import wait_for
from servicekit.topology import Subscription
from tests.reliability.helpers import (
    CountingConsumer,
    declare_subscriptions,
    inbox_ids,
    notifications,
    publish_events,
    publish_raw,
    queue_depth,
    record_notification,
)

pytestmark = pytest.mark.real

TYPE = "reliability.workers.happened"
#: the consumer's setting: how many ``prepare`` calls it makes at once
PREPARE_THREADS = "ECOURT_CONSUMER_PREPARE_THREADS"


def _queued(service: str, vhost: str, exchange: str, events: list[CloudEvent]) -> Subscription:
    """``service``'s subscription, with ``events`` waiting in its queue."""
    sub = Subscription(service, (TYPE,), queue_name=f"{service}.events",
                       dlq_name=f"{service}.dlq")
    declare_subscriptions(vhost, exchange, sub)
    publisher = PikaPublisher(vhost, exchange, confirm_timeout=10)
    try:
        assert len(publish_events(publisher, TOPIC, TYPE, events)) == len(events)
    finally:
        publisher.close()
    return sub


def _plain(n: int) -> list[CloudEvent]:
    return [CloudEvent(type=TYPE, source="/reliability", data={"n": i}) for i in range(n)]


def test_workers_keep_each_subjects_order_and_handle_every_event_once(
        make_dbs, vhost, exchange, workers) -> None:  # type: ignore[no-untyped-def]
    [db] = make_dbs("workers")
    events = [CloudEvent(type=TYPE, source="/reliability", subject=f"case/{i % 12}",
                         data={"seq": i // 12}) for i in range(360)]
    sub = _queued("rel_workers", vhost, exchange, events)
    seen: dict[str, list[int]] = collections.defaultdict(list)
    threads: set[str] = set()
    lock = threading.Lock()

    def handler(session, event: CloudEvent) -> None:  # type: ignore[no-untyped-def]
        record_notification(session, event)
        with lock:
            seen[event.subject or ""].append(int(event.data["seq"]))
            threads.add(threading.current_thread().name)

    consumer = EventConsumer("rel_workers", db, {TYPE: handler}, broker_url=vhost,
                             exchange=exchange, subscription=sub, batch_size=60, workers=3)
    workers.start("consumer", consumer.run)
    wait_for(lambda: len(inbox_ids(db, "rel_workers")) == len(events), timeout=60,
             message="every event to be handled")
    wait_for(lambda: queue_depth(vhost, sub.queue) == 0, timeout=30, message="the acks")
    assert workers.stop() == []

    assert notifications(db) == (len(events), len(events))  # once each, none twice
    assert set(inbox_ids(db, "rel_workers")) == {e.id for e in events}
    assert len(seen) == 12
    for subject, order in seen.items():
        assert order == sorted(order) == list(range(30)), subject  # in order, no repeats
    assert len(threads) > 1, "the batches were split over more than one worker"


def test_the_next_batch_is_read_while_one_is_handled(make_dbs, vhost, exchange,
                                                     workers) -> None:  # type: ignore[no-untyped-def]
    [db] = make_dbs("overlap")
    events = _plain(50)
    sub = _queued("rel_overlap", vhost, exchange, events)
    read_meanwhile: list[int] = []
    consumer: CountingConsumer

    def handler(session, event: CloudEvent) -> None:  # type: ignore[no-untyped-def]
        record_notification(session, event)
        if not read_meanwhile:  # the first event waits until the next batch has been read
            wait_for(lambda: len(consumer._batch) >= 10, timeout=10,
                     message="the next batch to be read while this one is handled")
            read_meanwhile.append(len(consumer._batch))

    consumer = CountingConsumer("rel_overlap", db, {TYPE: handler}, broker_url=vhost,
                                exchange=exchange, subscription=sub, batch_size=10,
                                prefetch=40)
    workers.start("consumer", consumer.run)
    wait_for(lambda: len(inbox_ids(db, "rel_overlap")) == len(events), timeout=60,
             message="every event to be handled")
    assert workers.stop() == []
    assert read_meanwhile and read_meanwhile[0] >= 10
    assert notifications(db) == (len(events), len(events))


def test_a_clean_stop_acks_the_batch_in_hand(make_dbs, vhost, exchange,
                                             workers) -> None:  # type: ignore[no-untyped-def]
    [db] = make_dbs("stop")
    events = _plain(40)
    sub = _queued("rel_stop", vhost, exchange, events)
    in_hand = threading.Event()
    release = threading.Event()

    def slow(session, event: CloudEvent) -> None:  # type: ignore[no-untyped-def]
        record_notification(session, event)
        in_hand.set()
        release.wait(10)

    first = CountingConsumer("rel_stop", db, {TYPE: slow}, broker_url=vhost,
                             exchange=exchange, subscription=sub, batch_size=10, prefetch=20)
    stop = threading.Event()
    runner = threading.Thread(target=first.run, args=(stop,), daemon=True)
    runner.start()
    assert in_hand.wait(15)
    stop.set()  # stop while the first batch is in the worker's hands
    release.set()
    runner.join(20)
    assert not runner.is_alive()
    done = len(inbox_ids(db, "rel_stop"))
    assert 0 < done < len(events)
    wait_for(lambda: queue_depth(vhost, sub.queue) == len(events) - done, timeout=10,
             message="the handled batch acked, the rest back on the queue")

    second = CountingConsumer("rel_stop", db, {TYPE: record_notification}, broker_url=vhost,
                              exchange=exchange, subscription=sub)
    workers.start("consumer", second.run)
    wait_for(lambda: len(inbox_ids(db, "rel_stop")) == len(events), timeout=30,
             message="the second consumer to finish")
    assert workers.stop() == []
    assert sum(second.deliveries.values()) == len(events) - done  # nothing handled came back
    assert notifications(db) == (len(events), len(events))


def test_one_ack_settles_a_batch_but_not_the_message_it_rejected(
        make_dbs, vhost, exchange, workers) -> None:  # type: ignore[no-untyped-def]
    [db] = make_dbs("acks")
    first, second = _plain(10), _plain(10)
    sub = _queued("rel_acks", vhost, exchange, first)
    publish_raw(vhost, sub.queue, b"not a cloud event", message_id="junk")
    publisher = PikaPublisher(vhost, exchange, confirm_timeout=10)
    try:
        assert len(publish_events(publisher, TOPIC, TYPE, second)) == 10
    finally:
        publisher.close()
    assert queue_depth(vhost, sub.queue) == 21
    consumer = CountingConsumer("rel_acks", db, {TYPE: record_notification}, broker_url=vhost,
                                exchange=exchange, subscription=sub, batch_size=50)
    workers.start("consumer", consumer.run)
    wait_for(lambda: len(inbox_ids(db, "rel_acks")) == 20, timeout=30,
             message="the good events to be handled")
    wait_for(lambda: queue_depth(vhost, sub.dlq) == 1, timeout=10,
             message="the rejected message in the dead-letter queue")
    assert workers.stop() == []
    assert queue_depth(vhost, sub.queue) == 0  # all acked, none waiting to come back
    assert consumer.deliveries["junk"] == 1
    assert notifications(db) == (20, 20)


def test_a_batchs_prepares_run_at_once_within_the_bound_and_subjects_keep_their_order(
        make_dbs, vhost, exchange, workers, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Two workers share the consumer's four prepare threads: no prepare ends before four have
    started (so the first four ran at once), never more than four run at once, and each
    subject's events are applied in order, once. Failed before: the prepares ran one after
    the other, the first waited alone until it gave up."""
    monkeypatch.setenv(PREPARE_THREADS, "4")
    [db] = make_dbs("prepares")
    events = [CloudEvent(type=TYPE, source="/reliability", subject=f"case/{i % 3}",
                         data={"seq": i // 3}) for i in range(12)]
    sub = _queued("rel_prepares", vhost, exchange, events)
    changed = threading.Condition()
    counts = collections.Counter[str]()
    lonely: list[str] = []
    seen: dict[str, list[int]] = collections.defaultdict(list)

    def prepare(event: CloudEvent) -> int:
        with changed:
            counts["started"] += 1
            counts["running"] += 1
            counts["most"] = max(counts["most"], counts["running"])
            changed.notify_all()
            met = changed.wait_for(lambda: counts["started"] >= 4, timeout=10)
            counts["running"] -= 1
        if not met:
            lonely.append(event.id)
            raise RuntimeError("the first four prepares did not run at once")
        return int(event.data["seq"])

    def apply(session, event: CloudEvent, seq: int) -> None:  # type: ignore[no-untyped-def]
        record_notification(session, event)
        with changed:
            seen[event.subject or ""].append(seq)

    consumer = EventConsumer("rel_prepares", db, {TYPE: TwoPhaseHandler(prepare, apply)},
                             broker_url=vhost, exchange=exchange, subscription=sub,
                             batch_size=len(events), workers=2)
    workers.start("consumer", consumer.run)
    wait_for(lambda: lonely or len(inbox_ids(db, "rel_prepares")) == len(events), timeout=60,
             message="every event to be handled")
    assert workers.stop() == []
    assert lonely == []
    assert counts["most"] == 4
    assert notifications(db) == (len(events), len(events))
    assert {subject: order for subject, order in seen.items()} == {
        f"case/{n}": [0, 1, 2, 3] for n in range(3)}
