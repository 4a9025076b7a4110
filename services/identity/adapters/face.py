"""The face check (人脸识别): an external provider compares a live capture with the photo of the
ID card on file. Offline lawyer verification asks it before an application goes to a court.

* ``DevFaceVerifier``  always passes and says so plainly: no real verification happens. For
                       development and tests only.
* ``HttpFaceVerifier`` POSTs ``{"account_id", "name"}`` with the ID-card image's SHA-256 to the
                       provider and expects ``{"passed": bool, "detail": str}``; the API key is
                       read from a file (never the environment or logs).

Environment: ``IDENTITY_FACE_VERIFIER=dev|http`` (default ``dev``),
``IDENTITY_FACE_VERIFIER_URL``, ``IDENTITY_FACE_VERIFIER_KEY_FILE``,
``IDENTITY_FACE_VERIFIER_TIMEOUT`` (seconds, default 10).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import requests

from servicekit.problems import Problem

DEV_DETAIL = "development face check: no real verification performed"


@dataclass(frozen=True)
class FaceResult:
    passed: bool
    detail: str


class FaceVerifier(Protocol):
    def verify(self, *, account_id: str, name: str, id_card_sha256: str) -> FaceResult: ...


class DevFaceVerifier:
    def verify(self, *, account_id: str, name: str, id_card_sha256: str) -> FaceResult:
        return FaceResult(True, DEV_DETAIL)


class HttpFaceVerifier:
    def __init__(self, url: str, api_key_file: str | Path, timeout: float = 10.0) -> None:
        self.url, self.api_key_file, self.timeout = url, Path(api_key_file), timeout

    def verify(self, *, account_id: str, name: str, id_card_sha256: str) -> FaceResult:
        try:
            key = self.api_key_file.read_text(encoding="utf-8").strip()
            resp = requests.post(self.url, timeout=self.timeout,
                                 headers={"Authorization": f"Bearer {key}"},
                                 json={"account_id": account_id, "name": name,
                                       "id_card_sha256": id_card_sha256})
            resp.raise_for_status()
            body = resp.json()
            return FaceResult(bool(body["passed"]), str(body.get("detail", ""))[:200])
        except (OSError, requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise Problem(503, "face-check-unavailable",
                          "the face check service is unavailable; try again later") from exc


def face_verifier_from_env() -> FaceVerifier:
    kind = os.environ.get("IDENTITY_FACE_VERIFIER", "dev")
    if kind == "dev":
        return DevFaceVerifier()
    if kind == "http":
        return HttpFaceVerifier(os.environ["IDENTITY_FACE_VERIFIER_URL"],
                                os.environ["IDENTITY_FACE_VERIFIER_KEY_FILE"],
                                float(os.environ.get("IDENTITY_FACE_VERIFIER_TIMEOUT", "10")))
    raise ValueError(f"IDENTITY_FACE_VERIFIER must be dev or http, not {kind!r}")
