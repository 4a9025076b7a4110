"""The CloudEvents 1.0 envelope (structured mode, JSON), kept in this one module.

The routing key is the event type, written as a string by the publishing service
(``identity.account.registered``), never derived from a class name.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from servicekit.db import utcnow

SPECVERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"
REQUIRED = ("id", "source", "type", "specversion")
#: the optional attributes we read, each a string when present
OPTIONAL = ("subject", "correlationid", "causationid", "time")
#: the longest id and type a consumer can record (the inbox's columns)
MAX_ID_LENGTH = 64
MAX_TYPE_LENGTH = 200
#: one encoder for every event: ``json.dumps`` with non-default options builds a new one per call
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class MalformedEvent(ValueError):
    """A message that is not a CloudEvent we can read; it goes to the dead-letter queue."""


@dataclass(frozen=True)
class CloudEvent:
    type: str
    source: str
    data: dict[str, Any]
    subject: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=utcnow)
    correlationid: str | None = None
    causationid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": self.data,
        }
        if self.subject:
            out["subject"] = self.subject
        if self.correlationid:
            out["correlationid"] = self.correlationid
        if self.causationid:
            out["causationid"] = self.causationid
        return out

    def to_json(self) -> str:
        return _ENCODE(self.to_dict())

    @classmethod
    def from_json(cls, body: str | bytes) -> CloudEvent:
        try:
            raw = json.loads(body)
        except (TypeError, ValueError) as exc:
            raise MalformedEvent(f"not JSON: {exc}") from exc
        if not isinstance(raw, dict) or any(not raw.get(k) for k in REQUIRED):
            raise MalformedEvent("missing one of the required attributes " + ", ".join(REQUIRED))
        # Parseable JSON of the wrong shape must stop here, as a malformed event: past this
        # point a list for a type or a 100-character id fails deep in the consumer (a
        # TypeError, the inbox's column), which would take its whole batch down with it.
        wrong = [k for k in (*REQUIRED, *OPTIONAL) if raw.get(k) is not None
                 and not isinstance(raw[k], str)]
        if wrong:
            raise MalformedEvent("attributes must be strings: " + ", ".join(wrong))
        if len(raw["id"]) > MAX_ID_LENGTH or len(raw["type"]) > MAX_TYPE_LENGTH:
            raise MalformedEvent(f"id longer than {MAX_ID_LENGTH} or type longer than "
                                 f"{MAX_TYPE_LENGTH} characters")
        if raw["specversion"] != SPECVERSION:
            raise MalformedEvent(f"unsupported specversion {raw['specversion']!r}")
        data = raw.get("data") or {}
        if not isinstance(data, dict):
            raise MalformedEvent("data must be a JSON object")
        try:
            time = datetime.fromisoformat(str(raw.get("time", "")).replace("Z", "+00:00"))
        except ValueError:
            time = utcnow()
        return cls(type=raw["type"], source=raw["source"], data=data,
                   subject=raw.get("subject"), id=raw["id"], time=time,
                   correlationid=raw.get("correlationid"), causationid=raw.get("causationid"))
