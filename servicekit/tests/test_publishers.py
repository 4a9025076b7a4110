"""PikaPublisher without a broker: the frames it writes are the ones pika would write, and its
bookkeeping places every confirm, nack and return on the right row of the right batch while
several batches are outstanding."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pika
import pytest
from pika import frame, spec

from servicekit.publishers import QUEUE, TOPIC, Outgoing, PikaPublisher, PublishError

EXCHANGE = "ecourt.events"


def pika_frames(m: Outgoing, exchange: str, channel: int, body_max: int) -> bytes:
    """What ``Channel.basic_publish`` + ``Connection._send_message`` marshal for ``m``."""
    props = pika.BasicProperties(content_type="application/cloudevents+json", delivery_mode=2,
                                 message_id=m.event_id, headers=m.headers or None)
    body = m.body.encode("utf-8")
    out = [frame.Method(channel, spec.Basic.Publish(exchange=exchange, routing_key=m.routing_key,
                                                    mandatory=True)).marshal(),
           frame.Header(channel, len(body), props).marshal()]
    out += [frame.Body(channel, body[i:i + body_max]).marshal()
            for i in range(0, len(body), body_max)]
    return b"".join(out)


def message(row: int, *, kind: str = TOPIC, key: str = "matters.case.filed",
            headers: dict[str, object] | None = None, body: str | None = None,
            event_id: str | None = None) -> Outgoing:
    if body is None:
        body = json.dumps({"id": row, "data": {"案号": "(2025)粤0106民初1号"}}, ensure_ascii=False)
    return Outgoing(row, event_id or f"evt-{row}", kind, key, body, headers or {})


@pytest.mark.parametrize("m", [
    message(1),
    message(2, kind=QUEUE, key="delivery.events", headers={"x-ecourt-attempt": 2,
                                                           "x-ecourt-error": "boom"}),
    message(3, body="x" * 5000),  # more than one body frame
    message(4, body=""),  # no body frame at all
])
def test_frames_are_the_ones_pika_marshals(m: Outgoing) -> None:
    publisher = PikaPublisher("amqp://guest:guest@127.0.0.1/", EXCHANGE)
    exchange = EXCHANGE if m.kind == TOPIC else ""
    body_max = 1000 if m.row_id == 3 else 4088
    assert publisher._frames(m, exchange, 1, body_max) == pika_frames(m, exchange, 1, body_max)


class FakeConnection:
    """Stands in for pika's connection: records what is written, never does I/O."""

    is_open = True
    _body_max_length = 131_064

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.ioloop = SimpleNamespace()

    def _output_marshaled_frames(self, frames: tuple[bytes, ...]) -> None:
        self.written.extend(frames)


def connected() -> tuple[PikaPublisher, FakeConnection]:
    publisher = PikaPublisher("amqp://guest:guest@127.0.0.1/", EXCHANGE)
    conn = FakeConnection()
    publisher._conn = conn
    publisher._channel = SimpleNamespace(channel_number=1)
    publisher._generation = 1
    publisher._run_loop = lambda timeout, done: None  # type: ignore[method-assign]
    return publisher, conn


def ack(tag: int, *, multiple: bool = False, nack: bool = False) -> SimpleNamespace:
    method = (spec.Basic.Nack if nack else spec.Basic.Ack)(delivery_tag=tag, multiple=multiple)
    return SimpleNamespace(method=method)


def returned(publisher: PikaPublisher, m: Outgoing, exchange: str) -> None:
    publisher._on_return(None, SimpleNamespace(exchange=exchange, routing_key=m.routing_key),
                         SimpleNamespace(message_id=m.event_id), b"")


def test_two_outstanding_batches_are_settled_row_by_row() -> None:
    publisher, conn = connected()
    first = [message(10), message(11), message(12)]
    # the same event twice (an original and its retry), sent to different places
    second = [message(20), message(21, event_id="evt-11", kind=QUEUE, key="delivery.events"),
              message(22)]
    t1 = publisher.send(first)
    t2 = publisher.send(second)
    assert b"".join(conn.written) == b"".join(
        pika_frames(m, EXCHANGE if m.kind == TOPIC else "", 1, conn._body_max_length)
        for m in first + second)

    returned(publisher, second[1], "")       # tag 5: unroutable, its ack follows
    publisher._on_confirm(ack(2, multiple=True))  # tags 1-2
    publisher._on_confirm(ack(4))                 # tag 4, out of order
    publisher._on_confirm(ack(3, nack=True))      # tag 3
    publisher._on_confirm(ack(6, multiple=True))  # tags 5-6
    one, two = publisher.collect(t1), publisher.collect(t2)
    assert one.confirmed == [10, 11] and one.failed == {12: "nacked by the broker"}
    assert two.confirmed == [20, 22]
    assert two.failed == {21: "unroutable: no queue bound for this routing key"}
    assert publisher._tags == {} and publisher._open == []


def test_a_batch_left_unconfirmed_raises_and_a_partial_one_marks_the_rest_failed() -> None:
    publisher, _conn = connected()
    publisher.close = lambda: None  # type: ignore[method-assign]
    t1 = publisher.send([message(1), message(2)])
    t2 = publisher.send([message(3)])
    publisher._on_confirm(ack(1))
    publisher._error = "connection closed: gone"
    result = publisher.collect(t1)
    assert result.confirmed == [1] and result.failed == {2: "connection closed: gone"}
    with pytest.raises(PublishError):
        publisher.collect(t2)


def test_an_unpublishable_message_is_refused_in_its_ticket_and_the_rest_is_written() -> None:
    publisher, conn = connected()
    long_id = "\U0001d508" * 64  # 256 bytes of UTF-8: over AMQP's 255
    huge = {"x-ecourt-error": "e" * (conn._body_max_length + 100)}  # properties over frame_max
    batch = [message(1, event_id=long_id), message(2), message(3, headers=huge), message(4)]
    ticket = publisher.send(batch)
    assert b"".join(conn.written) == b"".join(
        pika_frames(m, EXCHANGE, 1, conn._body_max_length) for m in (batch[1], batch[3]))
    assert ticket.pending == 2 and sorted(publisher._tags) == [1, 2]
    assert set(ticket.refused) == {1, 3}
    publisher._on_confirm(ack(2, multiple=True))
    result = publisher.collect(ticket)
    assert result.confirmed == [2, 4]
    assert result.failed[1].startswith("unpublishable: message id of 256 bytes")
    assert result.failed[3].startswith("unpublishable: properties of")

    only = publisher.send([message(5, event_id=long_id)])  # nothing to write at all
    assert only.pending == 0
    assert publisher.collect(only).failed == {5: only.refused[5]}


@pytest.mark.parametrize(("closed", "reason", "suspect"), [
    ("channel", pika.exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED - message "
                                                           "size larger than max size"), True),
    ("connection", pika.exceptions.ConnectionClosedByBroker(501, "FRAME_ERROR"), True),
    ("connection", pika.exceptions.StreamLostError("reset"), True),
    ("connection", pika.exceptions.ConnectionBlockedTimeout(), False),
    ("connection", pika.exceptions.AMQPHeartbeatTimeout(), False),
    ("connection", pika.exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED"), False),
])
def test_a_batch_that_nothing_settled_says_whether_the_close_may_be_its_own(
        closed: str, reason: Exception, suspect: bool) -> None:
    publisher, _conn = connected()
    publisher.close = lambda: None  # type: ignore[method-assign]
    ticket = publisher.send([message(1), message(2)])
    if closed == "channel":
        publisher._conn.is_open = False
        publisher._on_channel_closed(None, reason)
    else:
        publisher._conn.ioloop.stop = lambda: None
        publisher._on_conn_closed(publisher._conn, reason)
    with pytest.raises(PublishError) as failed:
        publisher.collect(ticket)
    assert failed.value.suspect is suspect and not failed.value.unreachable


def test_a_timeout_is_no_sign_against_the_batch() -> None:
    publisher, _conn = connected()
    publisher.close = lambda: None  # type: ignore[method-assign]
    with pytest.raises(PublishError) as failed:
        publisher.collect(publisher.send([message(1)]))
    assert str(failed.value) == "confirms timed out" and not failed.value.suspect
