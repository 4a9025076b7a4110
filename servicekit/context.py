"""Request and event context: the ids that tie a log line, an event and its effects together."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id",
                                                                         default=None)
_causation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("causation_id",
                                                                           default=None)


def new_id() -> str:
    return uuid.uuid4().hex


def request_id() -> str | None:
    return _request_id.get()


def correlation_id() -> str | None:
    """The id that follows a request through every event it causes."""
    return _request_id.get()


def causation_id() -> str | None:
    return _causation_id.get()


@contextmanager
def bound(request: str | None, causation: str | None = None) -> Iterator[None]:
    """Bind the ids for the duration of one request or one handled event."""
    t1 = _request_id.set(request)
    t2 = _causation_id.set(causation)
    try:
        yield
    finally:
        _request_id.reset(t1)
        _causation_id.reset(t2)
