"""Sealing personal data that must travel in a message (the SMS request's phone number).

Events carry account ids, not contact details; the SMS request is the one exception, and even
there the phone travels encrypted (Fernet: AES-128-CBC + HMAC-SHA256) under a key only delivery
and the notifier hold, so the broker, its logs and the outbox rows never see it in clear.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken


def _fernet(secret: str) -> Fernet:
    explicit = os.environ.get("ECOURT_SMS_KEY")
    if explicit:
        return Fernet(explicit.encode())
    digest = hashlib.sha256(b"ecourt-sms-seal:" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(value: str, secret: str) -> str:
    return _fernet(secret).encrypt(value.encode()).decode()


def unseal(token: str, secret: str) -> str:
    try:
        return _fernet(secret).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("sealed value cannot be opened with this key") from exc
