"""TokenVerifier: the cache of verified tokens, and JWKS fetches that a caller or an attacker
cannot multiply."""

from __future__ import annotations

import time
from typing import Any

import pytest

from servicekit.tokens import InvalidToken, KeysNeeded, SigningKey, TokenVerifier


class CountingJwks:
    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.fetches = 0

    def __call__(self) -> dict[str, Any]:
        self.fetches += 1
        return {"keys": [k.jwk() for k in self.keys]}


def test_unknown_key_ids_reload_the_jwks_at_most_once_per_interval() -> None:
    key, stranger = SigningKey.generate(), SigningKey.generate()
    jwks = CountingJwks(key)
    verifier = TokenVerifier(jwks, unknown_kid_reload=60)
    assert verifier.verify(key.sign({"sub": "a"}))["sub"] == "a"
    for _ in range(50):
        with pytest.raises(InvalidToken):
            verifier.verify(stranger.sign({"sub": "mallory"}))
    assert jwks.fetches == 1


def test_a_new_key_is_picked_up_after_the_interval() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    jwks = CountingJwks(old)
    verifier = TokenVerifier(jwks, unknown_kid_reload=0)
    verifier.verify(old.sign({"sub": "a"}))
    jwks.keys.append(new)
    assert verifier.verify(new.sign({"sub": "b"}))["sub"] == "b"
    assert jwks.fetches == 2


def test_allow_fetch_false_never_fetches() -> None:
    key = SigningKey.generate()
    jwks = CountingJwks(key)
    verifier = TokenVerifier(jwks)
    token = key.sign({"sub": "a"})
    with pytest.raises(KeysNeeded):
        verifier.verify(token, allow_fetch=False)
    assert jwks.fetches == 0
    verifier.verify(token)
    assert verifier.verify(key.sign({"sub": "b"}), allow_fetch=False)["sub"] == "b"
    assert jwks.fetches == 1


def test_verified_tokens_are_cached_until_they_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    key = SigningKey.generate()
    verifier = TokenVerifier(CountingJwks(key), leeway=0)
    token = key.sign({"sub": "a"}, ttl=60)
    claims = verifier.verify(token)
    claims["sub"] = "changed by the caller"
    calls = []
    monkeypatch.setattr(verifier, "_verify", lambda *a: calls.append(a) or {})
    assert verifier.verify(token)["sub"] == "a"  # from the cache, unchanged
    assert calls == []
    # past its exp the cache no longer answers: the token is verified again (and refused;
    # PyJWT reads its own clock, so the refusal is played by the stand-in here)
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)

    def refuse(*args: Any) -> dict[str, Any]:
        calls.append(args)
        raise InvalidToken("Signature has expired")

    monkeypatch.setattr(verifier, "_verify", refuse)
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    assert len(calls) == 1


def test_cache_is_bounded() -> None:
    key = SigningKey.generate()
    verifier = TokenVerifier(CountingJwks(key), cache_size=5)
    for i in range(12):
        verifier.verify(key.sign({"sub": f"user-{i}"}))
    assert len(verifier._cache) <= 5
