"""A key withdrawn from the JWKS stops the tokens it signed at the verifier's next refresh,
those it already verified and remembers included (not at their ``exp``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from servicekit.tests.test_tokens import FailingJwks
from servicekit.tokens import InvalidToken, KeysNeeded, SigningKey, TokenVerifier


def published(*keys: SigningKey) -> FailingJwks:
    """identity's JWKS as the operators change it (``keys``); ``up`` False: unreachable."""
    jwks = FailingJwks(*keys)
    jwks.up = True
    return jwks


def test_a_remembered_token_of_a_withdrawn_key_is_refused_after_the_periodic_refresh(
        clock: SimpleNamespace) -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    jwks = published(new, old)  # rotated: the old key still published
    verifier = TokenVerifier(jwks, refresh_seconds=300.0)
    before = old.sign({"sub": "a"})
    assert verifier.verify(before)["sub"] == "a"  # remembered from now on
    jwks.keys = [new]  # withdrawn
    clock.now += 299  # not yet refreshed: still the keys held
    assert verifier.verify(before)["sub"] == "a"
    assert jwks.fetches == 1
    clock.now += 2  # the refresh is due: the remembered token itself brings it
    with pytest.raises(InvalidToken):
        verifier.verify(before)
    assert jwks.fetches == 2
    with pytest.raises(InvalidToken):  # and it stays refused
        verifier.verify(before)
    assert verifier.verify(new.sign({"sub": "b"}))["sub"] == "b"
    assert jwks.fetches == 2


def test_a_reload_for_an_unknown_kid_also_forgets_a_withdrawn_keys_tokens(
        clock: SimpleNamespace) -> None:
    old, new, newer = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    jwks = published(new, old)
    verifier = TokenVerifier(jwks, unknown_kid_reload=10.0)
    before = old.sign({"sub": "a"})
    kept = new.sign({"sub": "b"})
    verifier.verify(before)
    verifier.verify(kept)
    jwks.keys = [newer, new]  # rotated again, the oldest key withdrawn
    clock.now += 11
    assert verifier.verify(newer.sign({"sub": "c"}))["sub"] == "c"  # unknown kid: reloaded
    assert jwks.fetches == 2
    with pytest.raises(InvalidToken):
        verifier.verify(before)
    assert verifier.verify(kept)["sub"] == "b"  # a key still published keeps its tokens
    assert jwks.fetches == 2


def test_a_remembered_token_asks_for_the_due_refresh_off_the_event_loop(
        clock: SimpleNamespace) -> None:
    """``allow_fetch=False`` (the gateway's asyncio front end) never fetches: a remembered
    token whose refresh is due is ``KeysNeeded``, as a token not remembered is."""
    key = SigningKey.generate()
    jwks = published(key)
    verifier = TokenVerifier(jwks)
    token = key.sign({"sub": "a"})
    verifier.verify(token)
    assert verifier.verify(token, allow_fetch=False)["sub"] == "a"
    clock.now += 301
    with pytest.raises(KeysNeeded):
        verifier.verify(token, allow_fetch=False)
    assert jwks.fetches == 1
    assert verifier.verify(token)["sub"] == "a"  # the fetch, on a thread
    assert verifier.verify(token, allow_fetch=False)["sub"] == "a"
    assert jwks.fetches == 2


def test_remembered_tokens_keep_serving_while_the_jwks_cannot_be_refreshed(
        clock: SimpleNamespace) -> None:
    """An unreachable identity withdraws nothing: the keys held still serve, with one fetch
    per back-off, for remembered tokens as for others."""
    key = SigningKey.generate()
    jwks = published(key)
    verifier = TokenVerifier(jwks, failed_fetch_backoff=5.0)
    token = key.sign({"sub": "a"})
    verifier.verify(token)
    jwks.up = False
    clock.now += 301
    for _ in range(20):
        assert verifier.verify(token)["sub"] == "a"
        assert verifier.verify(token, allow_fetch=False)["sub"] == "a"
    assert jwks.fetches == 2
