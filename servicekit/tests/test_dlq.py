"""``ecourt dlq list/replay`` connect with bounded timeouts: under a broker memory alarm the
confirmed publish in ``replay`` gives up instead of waiting for ever."""

from __future__ import annotations

from typing import Any

import pika
import pytest

from servicekit import dlq


class Connected(Exception):
    """Raised by the stand-in connection: what matters is what it was given."""


@pytest.mark.parametrize("call", [
    lambda url: dlq.list_dead_letters(url, "svc.dlq"),
    lambda url: dlq.replay(url, "svc.dlq", "svc.events"),
])
def test_list_and_replay_connect_with_bounded_timeouts(monkeypatch: pytest.MonkeyPatch,
                                                       call: Any) -> None:
    given: list[pika.URLParameters] = []

    def connection(params: pika.URLParameters) -> None:
        given.append(params)
        raise Connected

    monkeypatch.setattr(dlq.pika, "BlockingConnection", connection)
    with pytest.raises(Connected):
        call("pyamqp://guest:guest@127.0.0.1:5672/ecourt")
    [params] = given
    assert params.blocked_connection_timeout == dlq.TIMEOUT == 30.0
    assert params.stack_timeout is not None and 0 < params.stack_timeout <= dlq.TIMEOUT
    assert params.virtual_host == "ecourt"


def test_timeouts_the_url_sets_are_kept() -> None:
    params = dlq._parameters("amqp://guest:guest@127.0.0.1/v?blocked_connection_timeout=5"
                             "&stack_timeout=20")
    assert params.blocked_connection_timeout == 5.0 and params.stack_timeout == 20.0


@pytest.mark.parametrize(("body", "headers", "attempts"), [
    (b'{"id": "e-1", "type": "t.x"}', {"x-ecourt-attempt": 3}, 3),
    (b'["not", "an", "event"]', {"x-ecourt-attempt": "three"}, 1),
    (b"\xff\xfe not even text", {}, 0),
])
def test_a_dead_letter_of_any_shape_is_listed(body: bytes, headers: dict, attempts: int) -> None:
    """``dlq list`` shows what is in the queue, malformed messages above all: reading one
    must not fail on its body or on a header someone else wrote."""
    letter = dlq._read(None, pika.BasicProperties(headers=headers, message_id="m-1"), body)
    assert (letter.event_id, letter.attempts, letter.body) == ("m-1", attempts, body)
