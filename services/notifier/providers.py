"""SMS providers: where the notifier hands a message over.

* ``FileSinkProvider`` (default, development): appends one JSON line per SMS to a file, with
  the phone masked — it stands in for a real gateway and says so in every line.
* ``HttpSmsGateway`` (production): POSTs to an SMS gateway with a timeout; the event id is the
  client message id, so a gateway that de-duplicates on it never sends a retried SMS twice.

Chosen by ``NOTIFIER_SMS_PROVIDER`` (``file`` | ``http``), ``NOTIFIER_SMS_URL``,
``NOTIFIER_SMS_API_KEY_FILE`` and ``NOTIFIER_SMS_FILE``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Protocol

import requests

from servicekit.config import data_dir
from servicekit.db import utcnow
from servicekit.logs import mask_phone


class SmsSendError(Exception):
    """The provider did not accept the message; the request is retried. ``transient``: the
    provider could not be reached, timed out, was busy or failed (5xx, 429), and is worth
    waiting for; otherwise it refused this message (another 4xx), and waiting will not help."""

    def __init__(self, reason: str, transient: bool = True) -> None:
        super().__init__(reason)
        self.transient = transient


class SmsProvider(Protocol):
    def send(self, message_id: str, phone: str, text: str) -> str: ...


class FileSinkProvider:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, message_id: str, phone: str, text: str) -> str:
        line = json.dumps({"provider": "development file sink (no SMS is sent)",
                           "message_id": message_id, "to": mask_phone(phone), "text": text,
                           "at": utcnow().isoformat()}, ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        return f"file:{message_id}"


class HttpSmsGateway:
    def __init__(self, url: str, api_key: str, timeout: float = 5.0) -> None:
        self.url = url
        self.api_key = api_key
        self.timeout = timeout
        self._http = requests.Session()

    def send(self, message_id: str, phone: str, text: str) -> str:
        try:
            resp = self._http.post(self.url, json={"message_id": message_id, "to": phone,
                                                   "text": text},
                                   headers={"Authorization": f"Bearer {self.api_key}"},
                                   timeout=self.timeout)
        except requests.RequestException as exc:
            raise SmsSendError(exc.__class__.__name__) from exc
        if resp.status_code >= 300:
            raise SmsSendError(f"gateway answered {resp.status_code}",
                               transient=resp.status_code >= 500 or resp.status_code == 429)
        return _reference(resp, message_id)


def _reference(resp: requests.Response, message_id: str) -> str:
    """The gateway's id for an accepted SMS. Any 2xx means sent: an answer that is not the
    JSON object we hoped for must not make us send the SMS again."""
    try:
        body = resp.json() if resp.content else {}
    except ValueError:
        return message_id
    return str(body.get("id") or message_id) if isinstance(body, dict) else message_id


def from_env() -> SmsProvider:
    if os.environ.get("NOTIFIER_SMS_PROVIDER", "file") == "http":
        key_file = os.environ.get("NOTIFIER_SMS_API_KEY_FILE", "")
        api_key = Path(key_file).read_text().strip() if key_file else ""
        return HttpSmsGateway(os.environ["NOTIFIER_SMS_URL"], api_key)
    return FileSinkProvider(Path(os.environ.get("NOTIFIER_SMS_FILE",
                                                str(data_dir() / "sms-sink.jsonl"))))
