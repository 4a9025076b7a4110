"""No ID number or mobile in clear past the kit's last line of defence (RELIABILITY S6): a
logged traceback and a log record's ``extra`` fields are masked like its message, a database
error's text quotes no parameters, and a failed event's error header is masked."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import select, text

from ecourt import registry
from servicekit import logs, migrations
from servicekit.consumer import ERROR_HEADER, EventConsumer
from servicekit.db import Database
from servicekit.envelope import CloudEvent
from servicekit.logs import Throttled
from servicekit.tables import outbox
from servicekit.testing import pg_databases

ID_NUMBER = "110101199003071234"
MOBILE = "13812345678"


def _json_lines(emit) -> list[dict]:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    logger = logging.getLogger("masking-probe")
    handler = logs.json_handler("probe", stream)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_logged_traceback_is_masked() -> None:
    def emit(logger: logging.Logger) -> None:
        try:
            raise ValueError(f"refused ({ID_NUMBER}, {MOBILE})")
        except ValueError:
            logger.exception("registration failed")

    [line] = _json_lines(emit)
    assert "ValueError" in line["exc_info"]
    assert ID_NUMBER not in line["exc_info"] and MOBILE not in line["exc_info"]
    assert "110***********1234" in line["exc_info"] and "138****5678" in line["exc_info"]


def test_a_stack_is_masked() -> None:
    def emit(logger: logging.Logger) -> None:
        def deep(_who: str) -> None:
            logger.warning("here", stack_info=True)
        deep("110101199003071234")  # this line is in the stack

    [line] = _json_lines(emit)
    assert ID_NUMBER not in json.dumps(line, ensure_ascii=False)


def test_extra_fields_are_masked_at_any_depth() -> None:
    objects = {"account": ID_NUMBER}

    def emit(logger: logging.Logger) -> None:
        logger.info("registered", extra={"phone": MOBILE, "objects": objects,
                                         "ids": [ID_NUMBER], "as_number": int(MOBILE),
                                         "count": 3})

    [line] = _json_lines(emit)
    dumped = json.dumps(line, ensure_ascii=False)
    assert ID_NUMBER not in dumped and MOBILE not in dumped
    assert line["phone"] == "138****5678" and line["as_number"] == "138****5678"
    assert line["objects"] == {"account": "110***********1234"}
    assert line["count"] == 3
    assert objects == {"account": ID_NUMBER}, "the caller's dict is not changed"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.real)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'p.db'}"
        return
    with pg_databases(["params"]) as urls:
        yield urls["params"]


def test_a_database_error_quotes_no_parameters(db_url: str) -> None:
    """A NUL in a text value: psycopg refuses it; SQLite refuses the CHECK. Either way the
    error's text names the statement but none of the values."""
    db = Database(db_url)
    try:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE people (id_number TEXT, phone TEXT, "
                                 "name TEXT CHECK (name = 'ok'))")
        with pytest.raises(sqlalchemy.exc.StatementError) as caught, db.transaction() as s:
            s.execute(text("INSERT INTO people VALUES (:id_number, :phone, :name)"),
                      {"id_number": ID_NUMBER, "phone": MOBILE, "name": "a\x00b"})
        message = str(caught.value)
        assert "INSERT INTO people" in message
        assert ID_NUMBER not in message and MOBILE not in message
    finally:
        db.dispose()


def test_a_failed_events_error_header_and_log_are_masked(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'delivery.db'}"
    migrations.upgrade(registry.get("delivery").migrations, url)
    db = Database(url)

    def handler(_session, _event) -> None:  # type: ignore[no-untyped-def]
        raise ValueError(f"no account for {ID_NUMBER} / {MOBILE}")

    class Delivery:
        def __init__(self, body: str) -> None:
            self.body = body
            self.headers: dict = {}

    try:
        consumer = EventConsumer("delivery", db, {"t.happened": handler},
                                 broker_url="memory://", exchange="unused", max_attempts=2)
        event = CloudEvent("t.happened", "/test", {})
        for attempt in (1, 2):  # a retry, then a dead letter
            delivery = Delivery(event.to_json())
            delivery.headers = {"x-ecourt-attempt": attempt}
            with caplog.at_level(logging.WARNING, "servicekit.consumer"):
                outcomes = consumer.handle([consumer._parse(delivery)],  # type: ignore[arg-type]
                                           threading.Event())
            # a failure rolls back its inbox row: the next delivery is not a duplicate
            assert outcomes == [("retried" if attempt == 1 else "dead_lettered", "t.happened")]
        with db.transaction() as s:
            headers = [json.loads(h) for h in s.scalars(select(outbox.c.headers))]
        errors = [h[ERROR_HEADER] for h in headers]
        assert len(errors) == 2
        for error in errors:
            assert error.startswith("ValueError: no account for 110***********1234")
            assert ID_NUMBER not in error and MOBILE not in error
        assert caplog.records
        for record in caplog.records:
            assert ID_NUMBER not in record.getMessage() and MOBILE not in record.getMessage()
    finally:
        db.dispose()


def test_a_recurring_warning_is_logged_once_per_interval_with_the_count_held_back(
        caplog: pytest.LogCaptureFixture) -> None:
    """During an outage every request meets the same warning: the log must not grow with
    the traffic."""
    now = [100.0]
    throttled = Throttled(logging.getLogger("test.throttled"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.throttled"):
        for _ in range(500):
            throttled.warning("keys down: %s", "timeout")
        now[0] += 10.0
        throttled.warning("keys down: %s", "timeout")
    lines = [r.getMessage() for r in caplog.records if r.name == "test.throttled"]
    assert lines == ["keys down: timeout",
                     "keys down: timeout (and 499 more like it since the last line)"]
