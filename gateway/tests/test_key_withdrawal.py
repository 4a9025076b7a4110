"""At the gateway, a token whose key identity withdrew from its JWKS is a 401 from the next
JWKS refresh on, even though the gateway verified (and remembered) it before."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client

from gateway import MemoryRateLimiter, create_gateway
from gateway.tests.conftest import auth
from servicekit import tokens
from servicekit.tokens import SigningKey, TokenVerifier


def test_a_withdrawn_keys_token_is_401_after_the_next_refresh(
        upstream: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimpleNamespace(now=1000.0)  # the verifier's monotonic clock, moved by the test
    monkeypatch.setattr(tokens, "time", SimpleNamespace(monotonic=lambda: clock.now,
                                                        time=time.time))
    old, new = SigningKey.generate(), SigningKey.generate()
    published = [new, old]  # identity rotated: the old key is still published

    def jwks() -> dict[str, Any]:
        return {"keys": [k.jwk() for k in published]}

    gw = Client(create_gateway(upstreams={"svc": upstream}, verifier=TokenVerifier(jwks),
                               rate_limiter=MemoryRateLimiter(100, 60), trust_forwarded=False))
    before = auth(old.sign({"sub": "acct-1", "roles": ["party"]}))
    assert gw.get("/api/svc/echo", headers=before).status_code == 200
    published.remove(old)  # withdrawn
    clock.now += 301  # the gateway's periodic JWKS refresh is due
    resp = gw.get("/api/svc/echo", headers=before)
    assert resp.status_code == 401
    assert resp.get_json()["type"].endswith("/invalid-token")
    assert upstream.config["calls"] == ["/echo"]  # the refused request never reached it
    after = auth(new.sign({"sub": "acct-1", "roles": ["party"]}))
    assert gw.get("/api/svc/echo", headers=after).status_code == 200
