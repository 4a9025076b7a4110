"""Operating a dead-letter queue: list what is parked, replay one or all.

Listing gets each message without acking and then closes the channel, which returns them all
to the (classic) queue in order. Replaying publishes a copy straight to the service's own queue
(not the topic exchange: other subscribers already handled it) with the attempt counter reset,
waits for the broker's confirm, and only then acks the dead letter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pika

from servicekit.consumer import ATTEMPT_HEADER, ERROR_HEADER, attempt_of


@dataclass
class DeadLetter:
    event_id: str
    type: str
    error: str
    attempts: int
    headers: dict[str, Any]
    body: bytes


#: seconds: the longest a connection may stay blocked by the broker (a memory or disk alarm)
#: before pika gives up on it, and the longest the TCP/AMQP bring-up may take
TIMEOUT = 30.0


def _parameters(url: str) -> pika.URLParameters:
    """The connection's parameters, bounded: without ``blocked_connection_timeout`` a
    confirmed publish in ``replay`` never returns while the broker blocks publishers (pika
    then raises ``ConnectionBlockedTimeout``; the dead letter stays unacked, in its queue).
    ``stack_timeout`` keeps pika's default (15 s) or is set to ``TIMEOUT`` if there is none.
    A value the URL sets (``?blocked_connection_timeout=60``) is kept."""
    params = pika.URLParameters(url.replace("pyamqp://", "amqp://"))
    if params.blocked_connection_timeout is None:
        params.blocked_connection_timeout = TIMEOUT
    if params.stack_timeout is None:
        params.stack_timeout = TIMEOUT
    return params


def _connect(url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(_parameters(url))


def _read(method, props, body: bytes) -> DeadLetter:  # type: ignore[no-untyped-def]
    headers = dict(props.headers or {})
    try:
        event = json.loads(body)
    except ValueError:
        event = {}
    if not isinstance(event, dict):  # a dead letter is often exactly what is not an event
        event = {}
    deaths = headers.get("x-death") or []
    error = headers.get(ERROR_HEADER) or (f"rejected by the broker: {deaths[0].get('reason')}"
                                          if deaths else "unknown")
    return DeadLetter(event_id=props.message_id or str(event.get("id", "")),
                      type=str(event.get("type", props.type or "")), error=str(error),
                      attempts=attempt_of(headers) if ATTEMPT_HEADER in headers else 0,
                      headers=headers, body=body)


def list_dead_letters(url: str, dlq: str, limit: int = 1000) -> list[DeadLetter]:
    conn = _connect(url)
    try:
        channel = conn.channel()
        found = []
        for _ in range(limit):
            method, props, body = channel.basic_get(dlq, auto_ack=False)
            if method is None:
                break
            found.append(_read(method, props, body))
        channel.close()  # returns every unacked message to the queue
        return found
    finally:
        conn.close()


def replay(url: str, dlq: str, queue: str, event_id: str | None = None,
           limit: int = 1000) -> list[str]:
    """Re-deliver dead letters (all, or the one with ``event_id``) to ``queue``."""
    conn = _connect(url)
    replayed: list[str] = []
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        for _ in range(limit):
            method, props, body = channel.basic_get(dlq, auto_ack=False)
            if method is None:
                break
            letter = _read(method, props, body)
            if event_id and letter.event_id != event_id:
                continue
            headers = {k: v for k, v in letter.headers.items()
                       if k not in (ATTEMPT_HEADER, ERROR_HEADER, "x-death",
                                    "x-first-death-exchange", "x-first-death-queue",
                                    "x-first-death-reason", "x-ecourt-failed-at")}
            headers[ATTEMPT_HEADER] = 1
            channel.basic_publish("", queue, body, pika.BasicProperties(
                content_type=props.content_type, delivery_mode=2,
                message_id=letter.event_id, headers=headers), mandatory=True)
            channel.basic_ack(method.delivery_tag)
            replayed.append(letter.event_id)
        channel.close()
        return replayed
    finally:
        conn.close()
