"""The lawyer registry (the Ministry of Justice's record of practising lawyers), asked when a
lawyer is verified online.

* ``FileLawyerRegistry`` reads a JSON list of ``{name, license_no, law_firm, status}``
  (``status``: ``practising`` or ``revoked``); the repository ships fictional lawyers in
  ``services/identity/data/lawyer-registry.json`` for development and tests.
* ``HttpLawyerRegistry`` GETs ``<url>/lawyers/<license_no>`` with the API key read from a file;
  404 means no such certificate, otherwise the same four fields.

Environment: ``IDENTITY_LAWYER_REGISTRY=file|http`` (default ``file``),
``IDENTITY_LAWYER_REGISTRY_FILE`` (default: the shipped file), ``IDENTITY_LAWYER_REGISTRY_URL``,
``IDENTITY_LAWYER_REGISTRY_KEY_FILE``, ``IDENTITY_LAWYER_REGISTRY_TIMEOUT`` (seconds, 10).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests

from servicekit.problems import Problem

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "data" / "lawyer-registry.json"
PRACTISING = "practising"


@dataclass(frozen=True)
class RegisteredLawyer:
    name: str
    license_no: str
    law_firm: str
    status: str  # practising | revoked


class LawyerRegistry(Protocol):
    def lookup(self, license_no: str) -> RegisteredLawyer | None: ...


def _lawyer(row: dict[str, Any]) -> RegisteredLawyer:
    return RegisteredLawyer(name=str(row["name"]), license_no=str(row["license_no"]),
                            law_firm=str(row["law_firm"]), status=str(row["status"]))


class FileLawyerRegistry:
    def __init__(self, path: str | Path = DEFAULT_FILE) -> None:
        self.path = Path(path)

    def lookup(self, license_no: str) -> RegisteredLawyer | None:
        rows = json.loads(self.path.read_text(encoding="utf-8"))
        for row in rows:
            if row.get("license_no") == license_no:
                return _lawyer(row)
        return None


class HttpLawyerRegistry:
    def __init__(self, url: str, api_key_file: str | Path, timeout: float = 10.0) -> None:
        self.url, self.api_key_file, self.timeout = url.rstrip("/"), Path(api_key_file), timeout

    def lookup(self, license_no: str) -> RegisteredLawyer | None:
        try:
            key = self.api_key_file.read_text(encoding="utf-8").strip()
            resp = requests.get(f"{self.url}/lawyers/{license_no}", timeout=self.timeout,
                                headers={"Authorization": f"Bearer {key}"})
            if resp.status_code == 404:
                return None
            resp.raise_for_status()
            return _lawyer(resp.json())
        except (OSError, requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise Problem(503, "lawyer-registry-unavailable",
                          "the lawyer registry is unavailable; try again later") from exc


def lawyer_registry_from_env() -> LawyerRegistry:
    kind = os.environ.get("IDENTITY_LAWYER_REGISTRY", "file")
    if kind == "file":
        return FileLawyerRegistry(os.environ.get("IDENTITY_LAWYER_REGISTRY_FILE") or DEFAULT_FILE)
    if kind == "http":
        return HttpLawyerRegistry(os.environ["IDENTITY_LAWYER_REGISTRY_URL"],
                                  os.environ["IDENTITY_LAWYER_REGISTRY_KEY_FILE"],
                                  float(os.environ.get("IDENTITY_LAWYER_REGISTRY_TIMEOUT", "10")))
    raise ValueError(f"IDENTITY_LAWYER_REGISTRY must be file or http, not {kind!r}")
