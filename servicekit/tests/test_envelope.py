"""Reading an event off the wire: JSON of the wrong shape is a malformed event, never an
error deeper in the consumer that would take its batch down with it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from ecourt import registry
from servicekit import migrations
from servicekit.consumer import ATTEMPT_HEADER, EventConsumer, attempt_of
from servicekit.db import Database
from servicekit.envelope import CloudEvent, MalformedEvent

GOOD = {"specversion": "1.0", "id": "e-1", "source": "/x", "type": "t.happened",
        "data": {"a": 1}}


def test_a_good_event_round_trips() -> None:
    event = CloudEvent.from_json(json.dumps({**GOOD, "subject": "case:1"}))
    assert (event.id, event.type, event.subject, event.data) == ("e-1", "t.happened",
                                                                 "case:1", {"a": 1})


@pytest.mark.parametrize("change", [
    {"id": 7}, {"type": ["t.happened"]}, {"source": {"a": 1}}, {"subject": 12},
    {"correlationid": ["x"]}, {"causationid": 3.5}, {"time": 1700000000},
    {"id": "x" * 65}, {"type": "t" * 201},
])
def test_attributes_of_the_wrong_type_or_length_are_malformed(change: dict) -> None:
    with pytest.raises(MalformedEvent):
        CloudEvent.from_json(json.dumps({**GOOD, **change}))


@pytest.mark.parametrize(("headers", "attempt"), [
    ({}, 1), ({ATTEMPT_HEADER: 3}, 3), ({ATTEMPT_HEADER: "3"}, 3),
    ({ATTEMPT_HEADER: "three"}, 1), ({ATTEMPT_HEADER: None}, 1), ({ATTEMPT_HEADER: -4}, 1),
])
def test_an_attempt_header_someone_else_wrote_never_fails_the_consumer(headers: dict,
                                                                       attempt: int) -> None:
    assert attempt_of(headers) == attempt


class _Delivery:
    def __init__(self, body: str) -> None:
        self.body = body
        self.headers: dict = {}


def test_a_malformed_message_is_set_aside_and_its_neighbours_are_handled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'delivery.db'}"
    migrations.upgrade(registry.get("delivery").migrations, url)
    db = Database(url)
    seen: list[str] = []
    try:
        consumer = EventConsumer("delivery", db,
                                 {"t.happened": lambda _s, e: seen.append(e.id)},
                                 broker_url="memory://", exchange="unused")
        bodies = [json.dumps({**GOOD, "id": "e-1"}), json.dumps({**GOOD, "type": ["x"]}),
                  json.dumps({**GOOD, "id": "e-3", "subject": None})]
        parsed = [consumer._parse(_Delivery(b)) for b in bodies]  # type: ignore[arg-type]
        outcomes = consumer.handle(parsed, threading.Event())
        assert outcomes == [("handled", "t.happened"), ("malformed", "unknown"),
                            ("handled", "t.happened")]
        assert seen == ["e-1", "e-3"]
    finally:
        db.dispose()
