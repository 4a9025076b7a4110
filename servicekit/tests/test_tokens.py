"""TokenVerifier: the cache of verified tokens, and JWKS fetches that a caller or an attacker
cannot multiply."""

from __future__ import annotations

import threading
import time
from typing import Any

import jwt
import pytest

from servicekit.testing import wait_for
from servicekit.tokens import (
    InvalidToken,
    KeysNeeded,
    KeysUnavailable,
    SigningKey,
    TokenVerifier,
)


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


class FailingJwks(CountingJwks):
    """A JWKS URL that fails (identity is down) until ``up`` is set."""

    def __init__(self, *keys: SigningKey) -> None:
        super().__init__(*keys)
        self.up = False

    def __call__(self) -> dict[str, Any]:
        self.fetches += 1
        if not self.up:
            raise ConnectionError("identity is down")
        return {"keys": [k.jwk() for k in self.keys]}


def _made_up_kid(i: int) -> str:
    return jwt.encode({"sub": "mallory", "iss": "ecourt-identity", "aud": "ecourt",
                       "iat": int(time.time()), "exp": int(time.time()) + 60},
                      SigningKey.generate().private, algorithm="EdDSA",
                      headers={"kid": f"made-up-{i}"})


def test_a_failed_jwks_fetch_backs_off_instead_of_fetching_per_token(clock) -> None:
    key = SigningKey.generate()
    jwks = FailingJwks(key)
    verifier = TokenVerifier(jwks, failed_fetch_backoff=5.0)
    made_up = [_made_up_kid(i) for i in range(20)]
    for token in made_up:
        with pytest.raises(KeysUnavailable):
            verifier.verify(token)
        clock.now += 0.1
    # backing off, the asyncio front end's no-fetch path answers at once too
    with pytest.raises(KeysUnavailable):
        verifier.verify(made_up[0], allow_fetch=False)
    assert jwks.fetches == 1
    clock.now += 5.0  # the back-off is over: one new try, failing again...
    for token in made_up:
        with pytest.raises(KeysUnavailable):
            verifier.verify(token)
    assert jwks.fetches == 2
    jwks.up = True  # ...identity is back: the next try after the back-off loads the keys
    with pytest.raises(KeysUnavailable):
        verifier.verify(key.sign({"sub": "a"}))
    clock.now += 5.1
    assert verifier.verify(key.sign({"sub": "a"}))["sub"] == "a"
    with pytest.raises(InvalidToken):  # keys loaded: a made-up kid is refused, not a 503
        verifier.verify(made_up[0])
    assert jwks.fetches == 3


def test_keys_held_keep_serving_while_the_jwks_cannot_be_refreshed(clock) -> None:
    key = SigningKey.generate()
    jwks = FailingJwks(key)
    jwks.up = True
    verifier = TokenVerifier(jwks, refresh_seconds=300.0, failed_fetch_backoff=5.0)
    verifier.verify(key.sign({"sub": "a"}))
    jwks.up = False
    clock.now += 301  # stale: refreshing fails, once per back-off
    for i in range(20):
        assert verifier.verify(key.sign({"sub": f"user-{i}"}))["sub"] == f"user-{i}"
        assert verifier.verify(key.sign({"sub": f"u-{i}"}), allow_fetch=False)["sub"] == f"u-{i}"
    assert jwks.fetches == 2


class CountingLock:
    """The verifier's lock, counting the callers that came to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.arrived = 0

    def acquire(self, blocking: bool = True) -> bool:
        self.arrived += 1
        return self._lock.acquire(blocking)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_concurrent_callers_share_one_fetch() -> None:
    callers = 8
    lock = CountingLock()

    class SlowFailingJwks(FailingJwks):
        def __call__(self) -> dict[str, Any]:
            # hold the fetch until every caller has queued behind it
            wait_for(lambda: lock.arrived >= callers, timeout=10)
            return super().__call__()

    jwks = SlowFailingJwks()
    verifier = TokenVerifier(jwks)
    verifier._lock = lock  # type: ignore[assignment]
    made_up = [_made_up_kid(i) for i in range(callers)]
    outcomes: list[str] = []

    def call(token: str) -> None:
        try:
            verifier.verify(token)
            outcomes.append("verified")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=call, args=(t,)) for t in made_up]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == ["KeysUnavailable"] * callers
    assert jwks.fetches == 1
