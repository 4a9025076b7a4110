"""Sealing personal data that must travel in a message (the SMS request's phone number).

Events carry account ids, not contact details; the SMS request is the one exception, and even
there the phone (and a verification code) travels encrypted (Fernet: AES-128-CBC +
HMAC-SHA256) under a key only the processes that seal or open hold: identity's API (it seals
codes and the phone in ``identity.code.issued`` and in ``signin_codes.target_sealed``),
delivery's consumer and the notifier. The broker, its logs, the outbox rows and every other
service never see the value in clear.

The key: ``ECOURT_SMS_KEY``, or ``ECOURT_SMS_KEY_FILE`` (a mounted secret file, read like the
other ``*_FILE`` secrets by ``servicekit.config.secret``). It holds one or more Fernet keys
separated by commas or whitespace: the first seals, any of them opens (``MultiFernet``). Make
one with::

    python3 -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'

Rotating without losing what is in flight (outboxes, queues, the dead-letter queue, identity's
stored ``target_sealed``):

1. put the new key first and keep the old one after it (``NEW,OLD``) in every process that
   holds the key, and deploy: new values are sealed with NEW, old ones still open;
2. wait until nothing sealed with OLD remains: a day covers the codes' lifetime, the queues and
   the dead-letter queue's usual life (replay or drop what is older first);
3. drop OLD (``NEW`` alone) and deploy again. A value sealed under a key no longer listed
   cannot be opened: ``unseal`` raises ``ValueError`` and the event goes to the DLQ.

Without ``ECOURT_SMS_KEY`` the key is derived from the service secret. That fallback is for the
embedded tier (``ecourt run``, one process, ``memory://`` bus) only: in the distributed tier every
service holds the service secret, so every service could open the values. A process that seals
or opens with the fallback while ``ECOURT_BROKER_URL`` is not ``memory://`` logs a warning (once).
Moving a deployment off the fallback is a rotation like any other: list the derived key
(``derived_key(service_secret)``) second, after the new key, for a day, then drop it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from servicekit import config

log = logging.getLogger(__name__)

KEY_ENV = "ECOURT_SMS_KEY"
_SEPARATORS = re.compile(r"[\s,]+")
_warned = False


@lru_cache(maxsize=8)
def _keys(raw: str) -> MultiFernet:
    """``raw`` (``NEW,OLD`` or whitespace-separated) as a MultiFernet: the first key seals."""
    fernets = []
    for position, key in enumerate(k for k in _SEPARATORS.split(raw) if k):
        try:
            fernets.append(Fernet(key.encode()))
        except ValueError:  # binascii.Error is one; never echo the key itself
            raise ValueError(f"{KEY_ENV}: key {position + 1} is not a Fernet key "
                             "(32 url-safe base64-encoded bytes)") from None
    if not fernets:
        raise ValueError(f"{KEY_ENV} is set but holds no key")
    return MultiFernet(fernets)


def derived_key(service_secret: str) -> str:
    """The embedded tier's fallback key, derived from the service secret (as a Fernet key, to
    list second in ``ECOURT_SMS_KEY`` while a deployment moves off the fallback)."""
    digest = hashlib.sha256(b"ecourt-sms-seal:" + service_secret.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def _warn_outside_embedded_tier() -> None:
    global _warned
    if _warned or config.env("ECOURT_BROKER_URL", "memory://").startswith("memory"):
        return
    _warned = True
    log.warning("%s is not set: phone numbers and verification codes are sealed with a key "
                "derived from the service secret, which every service holds; give %s (or "
                "%s_FILE) to identity's API, delivery's consumer and the notifier "
                "(deploy/secrets/README.md)", KEY_ENV, KEY_ENV, KEY_ENV)


def _fernet(service_secret: str) -> Fernet | MultiFernet:
    raw = config.secret(KEY_ENV, "").strip()
    if raw:
        return _keys(raw)
    _warn_outside_embedded_tier()
    return Fernet(derived_key(service_secret).encode())


def seal(value: str, secret: str) -> str:
    """``value`` encrypted under the first SMS key (``secret``: the service secret, used only
    by the embedded tier's fallback)."""
    return _fernet(secret).encrypt(value.encode()).decode()


def unseal(token: str, secret: str) -> str:
    """The value ``token`` seals, opened with any listed SMS key; ``ValueError`` if none opens
    it (a key rotated out, or a forged or damaged token)."""
    try:
        return _fernet(secret).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("sealed value cannot be opened with this key") from exc
