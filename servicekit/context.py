"""Request and event context: the ids that tie a log line, an event and its effects together."""

from __future__ import annotations

import base64
import contextvars
import itertools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id",
                                                                         default=None)
_causation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("causation_id",
                                                                           default=None)


#: an X-Request-ID a caller may choose; matched whole (``fullmatch``): ``$`` alone also matches
#: before a final newline, and an id ending in one went back in the answer's header (werkzeug
#: refuses it: no answer at all)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_from(incoming: str) -> str:
    """The request id for an incoming ``X-Request-ID`` value ("" when absent): the caller's,
    when it is one an id may be, else ``new_id()``. The gateway and every service decide the
    same way, so an id the gateway passed on is the one the service logs."""
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    return new_id()


def new_id() -> str:
    """A new request id: this process's random prefix and a counter.

    Unique without a system call per request (ids are for tracing, not secrets). The prefix is
    base32 (letters and the digits 2-7) and the counter short hex after a dash, so an id never
    holds a run of digits that reads like an ID number or a mobile number: the personal-data
    scans and the log masking look for exactly those, and a random hex id has such a run about
    once in 300."""
    return f"{_ids.prefix}-{next(_ids.counter):x}"


class _Ids:
    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.prefix = base64.b32encode(os.urandom(10)).decode().lower()
        self.counter = itertools.count(1)


_ids = _Ids()
os.register_at_fork(after_in_child=_ids.renew)  # forked workers must not share a prefix


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
