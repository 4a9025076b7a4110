"""JSON-lines logging with the request id on every line, and masking of personal data.

No ID-card number, mobile number or password may reach a log in clear (RELIABILITY S6): the
filter below masks any 18-digit ID number and 11-digit mobile number in the final message, as
a last line of defence behind code that never logs them in the first place.
"""

from __future__ import annotations

import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

from servicekit import context

_ID_NUMBER = re.compile(r"(?<!\d)(\d{3})\d{11}(\d{3}[\dXx])(?!\d)")
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask_id_number(value: str) -> str:
    """``440***********1234`` — keeps the first 3 and last 4 characters."""
    return value[:3] + "*" * (len(value) - 7) + value[-4:] if len(value) > 7 else "***"


def mask_phone(value: str) -> str:
    """``138****5678``."""
    return value[:3] + "****" + value[-4:] if len(value) >= 11 else "***"


def scrub(text: str) -> str:
    """Mask ID numbers and mobiles anywhere in free text."""
    text = _ID_NUMBER.sub(lambda m: m.group(1) + "*" * 11 + m.group(2)[-4:], text)
    return _MOBILE.sub(lambda m: m.group(1) + "****" + m.group(2), text)


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
        return True


def json_handler(service: str, stream=None) -> logging.Handler:  # type: ignore[no-untyped-def]
    """A handler writing each record to ``stream`` as one JSON object per line, its message
    masked and the request id added."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(
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
