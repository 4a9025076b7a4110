"""JSON-lines logging with the request id on every line, and masking of personal data.

No ID-card number, mobile number or password may reach a log in clear (RELIABILITY S6): the
filter below masks any 18-digit ID number and 11-digit mobile number in the final message, in
the formatted traceback and stack, and in the ``extra`` fields (strings, numbers, and those
inside dicts, lists and tuples), as a last line of defence behind code that never logs them in
the first place. A traceback is where they hide best: a driver's error quotes the values it
refused.

The same masking (``scrub``, ``scrub_value``) serves the outbox: ``servicekit.outbox.emit``
masks the strings of every event's data before it is written, so there is one implementation
of what an ID number or a mobile looks like and how it is masked.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from servicekit import context

#: one pass over the text, first match wins at each position: a UUID is left as it is (its
#: 12-hex-digit last group can hold 11 decimal digits in a row: masking them would corrupt an
#: id, never hide a number), then an 18-character ID number (the last may be X), then a mobile,
#: with or without the country code 86. A run of digits longer than the number is not one.
#: People also type them in the groups they read them in, a space or a hyphen between the
#: groups: ``138 1234 5678``, ``138-1234-5678``, ``+86 138…`` and ``440102 19900101 1234``;
#: those are masked digit by digit, the separators kept.
_PERSONAL = re.compile(
    r"(?P<uuid>(?<![0-9A-Fa-f])[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}"
    r"(?![0-9A-Fa-f]))"
    r"|(?<!\d)(?P<id_number>\d{17}[\dXx])(?!\d)"
    r"|(?<!\d)(?P<id_grouped>\d{6}[ -]\d{8}[ -]\d{3}[\dXx])(?![\dXx])"
    r"|(?<!\d)(?P<country>\+?86[ -]?)?(?P<mobile>1[3-9]\d{9})(?!\d)"
    r"|(?<!\d)(?P<grouped_country>\+?86[ -]?)?"
    r"(?P<mobile_grouped>1[3-9]\d[ -]\d{4}[ -]\d{4})(?!\d)")

#: every number ``_PERSONAL`` masks holds three digits in a row (a mobile's first group)
_DIGIT_RUN = re.compile(r"\d{3}")


class Throttled:
    """A warning that can recur on every request (a dependency down, a flood of refusals),
    logged at most once per ``interval`` seconds: the log must not grow with the traffic
    that caused it. The line after a quiet spell says how many were held back."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0,
                 clock: Any = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last = float("-inf")
        self._held = 0
        self._lock = threading.Lock()

    def warning(self, msg: str, *args: object) -> None:
        with self._lock:
            now = self.clock()
            if now - self._last < self.interval:
                self._held += 1
                return
            held, self._held, self._last = self._held, 0, now
        if held:
            msg += " (and %d more like it since the last line)"
            args = (*args, held)
        self.logger.warning(msg, *args)


def mask_id_number(value: str) -> str:
    """``440***********1234`` — keeps the first 3 and last 4 characters."""
    return value[:3] + "*" * (len(value) - 7) + value[-4:] if len(value) > 7 else "***"


def mask_phone(value: str) -> str:
    """``138****5678``."""
    return value[:3] + "****" + value[-4:] if len(value) >= 11 else "***"


def _mask_grouped(text: str) -> str:
    """A number typed in groups, its digits but the first 3 and the last 4 masked and its
    separators kept: ``138-****-5678``, ``440*** ******** 1234``."""
    digits = [i for i, c in enumerate(text) if c not in " -"]
    hidden = set(digits[3:-4])
    return "".join("*" if i in hidden else c for i, c in enumerate(text))


def _mask(match: re.Match[str]) -> str:
    if match["id_number"]:
        return mask_id_number(match["id_number"])
    if match["mobile"]:
        return (match["country"] or "") + mask_phone(match["mobile"])
    if match["id_grouped"]:
        return _mask_grouped(match["id_grouped"])
    if match["mobile_grouped"]:
        return (match["grouped_country"] or "") + _mask_grouped(match["mobile_grouped"])
    return match[0]  # a UUID


def scrub(text: str) -> str:
    """Mask ID numbers (``440***********1234``) and mobiles (``138****5678``) anywhere in free
    text; UUIDs and digit runs of other lengths are left as they are."""
    if not _DIGIT_RUN.search(text):
        return text  # most strings (names, courts, hex): one quick scan instead of _PERSONAL's
    return _PERSONAL.sub(_mask, text)


#: a record's own attributes; any other is an ``extra`` field
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime"}
#: formats a traceback or a stack as the standard library does
_PLAIN = logging.Formatter()


def _never(_key: Any) -> bool:
    return False


def scrub_value(value: Any, *, numbers: bool = True,
                opaque: Callable[[Any], bool] = _never) -> Any:
    """``value`` with ID numbers and mobiles masked in its strings, at any depth. With
    ``numbers``, a number that reads as one becomes its masked text (a log line; an event
    keeps its numbers, whose type its contract fixes). A dict's value under a key for which
    ``opaque`` is true is kept as it is (ciphertext, a digest). Containers are copied, never
    changed."""
    if isinstance(value, str):
        return scrub(value)
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
        masked = scrub(text)
        return value if masked == text else masked
    if isinstance(value, dict):
        return {scrub_value(k, numbers=numbers, opaque=opaque):
                v if opaque(k) else scrub_value(v, numbers=numbers, opaque=opaque)
                for k, v in value.items()}
    if type(value) in (list, tuple):  # not a named tuple: its type takes other arguments
        return type(value)(scrub_value(v, numbers=numbers, opaque=opaque) for v in value)
    return value


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = context.request_id()
        record.service = getattr(record, "service", self.service)
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = scrub(str(record.msg))
        # the traceback as text, masked: handlers with the standard formatter use exc_text as
        # it is, and ``_MaskingJsonFormatter`` masks what it formats from exc_info itself
        if record.exc_info and not record.exc_text:
            record.exc_text = _PLAIN.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_FIELDS:
                setattr(record, key, scrub_value(value))
        return True


class _MaskingJsonFormatter(JsonFormatter):
    """python-json-logger formats a record's traceback from ``exc_info`` anew, ignoring the
    ``exc_text`` the filter masked: what it formats is masked the same way."""

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return scrub(str(super().formatException(ei)))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return scrub(str(super().formatStack(stack_info)))


def json_handler(service: str, stream=None) -> logging.Handler:  # type: ignore[no-untyped-def]
    """A handler writing each record to ``stream`` as one JSON object per line, its message,
    traceback and extra fields masked and the request id added."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_MaskingJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(service)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        json_ensure_ascii=False,
    ))
    handler.addFilter(_ContextFilter(service))
    return handler


def configure(service: str = "ecourt", level: str = "INFO", stream=None) -> None:  # type: ignore[no-untyped-def]
    """Send every log record to ``stream`` as one JSON object per line."""
    handler = json_handler(service, stream)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("amqp", "kombu", "pika", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
