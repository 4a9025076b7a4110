"""EdDSA (Ed25519) access tokens: identity signs, everyone else verifies from the JWKS.

Verification never trusts the token's header: the algorithm list is fixed to ``EdDSA``, the key
must come from the JWKS by ``kid``, and ``exp``, ``iat``, ``sub``, ``iss`` and ``aud`` are
required (RELIABILITY S1: ``alg: none``, HS/EdDSA confusion, expired, wrong audience or issuer,
missing claims are all refused).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from servicekit.logs import Throttled
from servicekit.problems import Problem

ISSUER = "ecourt-identity"
AUDIENCE = "ecourt"
ALGORITHMS = ["EdDSA"]
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud"]


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or not for us."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class VerificationKey:
    """The public half of a signing key: what a JWKS publishes. A key identity no longer signs
    with is published this way until the tokens it signed have expired (key rotation)."""

    public: Ed25519PublicKey

    @classmethod
    def from_pem(cls, pem: bytes) -> VerificationKey:
        """The public key of a PEM file holding either half: a private key (``PRIVATE KEY``,
        as the signing key's own file) or a public one (``PUBLIC KEY``)."""
        if b"-----BEGIN PUBLIC KEY-----" in pem:
            public = serialization.load_pem_public_key(pem)
            if not isinstance(public, Ed25519PublicKey):
                raise ValueError("the key must be Ed25519")
            return cls(public)
        return SigningKey.from_pem(pem).verification_key()

    @property
    def public_raw(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)

    @property
    def kid(self) -> str:
        return hashlib.sha256(self.public_raw).hexdigest()[:16]

    def jwk(self) -> dict[str, str]:
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64(self.public_raw), "kid": self.kid,
                "use": "sig", "alg": "EdDSA"}


@dataclass
class SigningKey:
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the identity signing key must be Ed25519")
        return cls(key)

    def to_pem(self) -> bytes:
        return self.private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())

    def verification_key(self) -> VerificationKey:
        return VerificationKey(self.private.public_key())

    @property
    def public_raw(self) -> bytes:
        return self.verification_key().public_raw

    @property
    def kid(self) -> str:
        return self.verification_key().kid

    def jwk(self) -> dict[str, str]:
        return self.verification_key().jwk()

    def sign(self, claims: dict[str, Any], ttl: int = 900) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + ttl, **claims}
        return jwt.encode(payload, self.private, algorithm="EdDSA", headers={"kid": self.kid})


JwksSource = Callable[[], dict[str, Any]]


class KeysUnavailable(Exception):
    """The JWKS could not be fetched and the token's key is not known: the token cannot be
    judged either way (a 503, not a 401: the client did nothing wrong)."""


class KeysNeeded(Exception):
    """Verifying needs a JWKS fetch, and the caller asked not to block on one."""


class TokenVerifier:
    """Verifies access tokens against a JWKS, refreshed when an unknown ``kid`` appears.

    An unknown ``kid`` reloads the JWKS at most once per ``unknown_kid_reload`` seconds, so a
    flood of tokens with made-up key ids cannot turn every request into a JWKS fetch. A fetch
    that fails is not tried again for ``failed_fetch_backoff`` seconds (5, the ``Retry-After``
    of ``keys_unavailable``): meanwhile the keys already held still serve, and a token whose
    key is not among them is ``KeysUnavailable`` at once, without a fetch (``KeysNeeded`` is
    not raised either). Fetches are made one at a time, and a caller that waited for another's
    fetch judges again by its outcome before fetching itself, so concurrent callers share one
    fetch; a caller whose key is held does not wait for a fetch in progress.
    Tokens that verified are remembered (up to ``cache_size``) until their ``exp``: a portal
    sends the same token with every request, and an Ed25519 check plus PyJWT's parsing costs
    more than forwarding the request. A remembered token is answered only while its ``kid`` is
    in the JWKS last loaded, and a remembered token also starts the periodic refresh when it is
    due (a portal's traffic can be all remembered tokens): a key withdrawn from the JWKS (the
    operators rotated it and then removed it, or it leaked) stops every token it signed,
    remembered or not, at the next refresh (``refresh_seconds``, or sooner on an unknown
    ``kid``), not at their ``exp``.
    """

    def __init__(self, jwks_source: JwksSource, refresh_seconds: float = 300.0,
                 leeway: int = 5, unknown_kid_reload: float = 10.0,
                 cache_size: int = 10_000, failed_fetch_backoff: float = 5.0) -> None:
        self._source = jwks_source
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._loaded_at = -math.inf
        self._failed_at = -math.inf  # the last fetch that failed
        self._backoff = failed_fetch_backoff
        self._refresh = refresh_seconds
        self._leeway = leeway
        self._unknown_kid_reload = unknown_kid_reload
        self._cache: dict[str, tuple[str, dict[str, Any]]] = {}  # token -> (kid, claims)
        self._cache_size = cache_size
        self._failure: Exception | None = None
        self._lock = threading.Lock()

    def _fetch_due(self, kid: str) -> bool:
        """Whether judging ``kid`` needs a JWKS fetch now (never while backing off)."""
        now = time.monotonic()
        if now - self._failed_at < self._backoff:
            return False
        age = now - self._loaded_at
        return age > self._refresh or (kid not in self._keys and age > self._unknown_kid_reload)

    def _load(self, kid: str) -> None:
        """Fetch the JWKS if judging ``kid`` still needs it once this caller's turn comes."""
        if kid in self._keys:
            if not self._lock.acquire(blocking=False):
                return  # another caller is fetching: the key held serves meanwhile
        else:
            self._lock.acquire()
        try:
            if not self._fetch_due(kid):  # another caller fetched (or failed) meanwhile
                return
            try:
                keys: dict[str, Ed25519PublicKey] = {}
                for jwk in self._source().get("keys", []):
                    if (jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519"
                            and jwk.get("kid")):
                        keys[jwk["kid"]] = jwt.algorithms.OKPAlgorithm.from_jwk(json.dumps(jwk))
            except Exception as exc:
                self._failed_at = time.monotonic()
                self._failure = exc
                return
            self._keys = keys
            self._loaded_at = time.monotonic()
        finally:
            self._lock.release()

    def _key(self, kid: str, allow_fetch: bool) -> Ed25519PublicKey:
        if self._fetch_due(kid):
            if not allow_fetch:
                raise KeysNeeded(kid)
            self._load(kid)
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._failed_at > self._loaded_at:  # the last fetch failed: cannot judge the token
            raise KeysUnavailable(f"signing keys unavailable: {self._failure}")
        raise InvalidToken("unknown signing key")

    def verify(self, token: str, *, allow_fetch: bool = True) -> dict[str, Any]:
        """The token's claims, or ``InvalidToken``. ``allow_fetch=False`` raises
        ``KeysNeeded`` where the JWKS would have to be fetched first."""
        cached = self._cache.get(token)
        if cached is not None:
            claims = self._remembered(*cached, allow_fetch)
            if claims is not None:
                return dict(claims)
            self._cache.pop(token, None)
        kid, claims = self._verify(token, allow_fetch)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[token] = (kid, claims)
        return dict(claims)

    def _remembered(self, kid: str, claims: dict[str, Any],
                    allow_fetch: bool) -> dict[str, Any] | None:
        """A remembered token's claims, or None once its key left the JWKS or it expired.
        The key is looked up after any refresh that is due, so a withdrawn key's tokens are
        forgotten by the refresh that no longer lists it (checked here rather than by pruning
        the cache in ``_load``: a token verified with the old keys by a caller that had not
        finished when the new ones came would otherwise be remembered after the pruning)."""
        if kid in self._keys and self._fetch_due(kid):  # the periodic refresh
            if not allow_fetch:
                raise KeysNeeded(kid)
            self._load(kid)
        if kid not in self._keys or claims["exp"] + self._leeway <= time.time():
            return None
        return claims

    def _verify(self, token: str, allow_fetch: bool) -> tuple[str, dict[str, Any]]:
        """The token's ``kid`` and claims, checked against the JWKS."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        if header.get("alg") not in ALGORITHMS:
            raise InvalidToken("algorithm not allowed")
        kid = str(header.get("kid", ""))
        key = self._key(kid, allow_fetch)
        try:
            return kid, jwt.decode(token, key, algorithms=ALGORITHMS, audience=AUDIENCE,
                                   issuer=ISSUER, leeway=self._leeway,
                                   options={"require": REQUIRED_CLAIMS})
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc


def http_jwks_source(url: str, timeout: float = 3.0) -> JwksSource:
    import requests

    def fetch() -> dict[str, Any]:
        resp = requests.get(url, timeout=timeout)
        resp.raise_for_status()
        return resp.json()

    return fetch


#: one line per 10 s while tokens cannot be checked, however many requests bring one
_UNCHECKED = Throttled(logging.getLogger(__name__), 10.0)


def keys_unavailable(exc: KeysUnavailable | None = None) -> Problem:
    """The 503 problem for a token that cannot be checked because the JWKS is unreachable;
    ``exc`` is logged (throttled: every request with a token meets it during the outage)."""
    if exc is not None:
        _UNCHECKED.warning("token not checked: %s", exc)
    return Problem(503, "keys-unavailable",
                   "the signing keys cannot be fetched right now; try again shortly",
                   headers={"Retry-After": "5"})
