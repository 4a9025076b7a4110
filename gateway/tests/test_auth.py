"""RELIABILITY S1 at the gateway: every forged, expired or foreign token is a 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.tests.conftest import auth
from servicekit.tokens import AUDIENCE, ISSUER, SigningKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "acct-1", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600,
            **over}


def _unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(payload).encode())


def _assert_401(resp: Any) -> None:
    assert resp.status_code == 401
    assert resp.mimetype == "application/problem+json"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    body = resp.get_json()
    assert body["status"] == 401 and body["type"].startswith("https://")
    assert resp.headers["X-Request-ID"] == body["request_id"]


def test_protected_route_without_token_is_401(client, upstream):
    resp = client.get("/api/svc/echo")
    _assert_401(resp)
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert upstream.config["calls"] == []


def test_non_bearer_scheme_is_401(client):
    _assert_401(client.get("/api/svc/echo", headers={"Authorization": "Basic dXNlcjpwYXNz"}))
    _assert_401(client.get("/api/svc/echo", headers={"Authorization": "Bearer "}))


def test_tampered_signature_is_401(client, token):
    tok = token()
    head, payload, sig = tok.split(".")
    i = len(sig) // 2
    sig = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1:]
    _assert_401(client.get("/api/svc/echo", headers=auth(f"{head}.{payload}.{sig}")))


def test_tampered_payload_is_401(client, token):
    head, _payload, sig = token().split(".")
    forged = _b64(json.dumps(_claims(sub="someone-else", roles=["judge"])).encode())
    _assert_401(client.get("/api/svc/echo", headers=auth(f"{head}.{forged}.{sig}")))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_401(client, key, alg):
    tok = _unsigned({"alg": alg, "typ": "JWT", "kid": key.kid}, _claims()) + "."
    _assert_401(client.get("/api/svc/echo", headers=auth(tok)))


def _public_secrets(key: SigningKey) -> list[bytes]:
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return [key.public_raw, pem, key.jwk()["x"].encode(), json.dumps(key.jwk()).encode()]


@pytest.mark.parametrize("alg,digest", [("HS256", hashlib.sha256), ("HS512", hashlib.sha512)])
def test_hmac_signed_with_public_key_is_401(client, key, alg, digest):
    for secret in _public_secrets(key):
        signing_input = _unsigned({"alg": alg, "typ": "JWT", "kid": key.kid}, _claims())
        sig = hmac.new(secret, signing_input.encode(), digest).digest()
        tok = signing_input + "." + _b64(sig)
        _assert_401(client.get("/api/svc/echo", headers=auth(tok)))


def test_expired_token_is_401(client, key):
    _assert_401(client.get("/api/svc/echo", headers=auth(key.sign({"sub": "a"}, ttl=-60))))


@pytest.mark.parametrize("over", [{"aud": "another-app"}, {"iss": "evil-identity"},
                                  {"aud": ["another-app"]}])
def test_wrong_audience_or_issuer_is_401(client, key, over):
    tok = jwt.encode(_claims(**over), key.private, algorithm="EdDSA", headers={"kid": key.kid})
    _assert_401(client.get("/api/svc/echo", headers=auth(tok)))


@pytest.mark.parametrize("missing", ["sub", "exp", "iat", "iss", "aud"])
def test_missing_claim_is_401(client, key, missing):
    claims = _claims()
    del claims[missing]
    tok = jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid})
    _assert_401(client.get("/api/svc/echo", headers=auth(tok)))


def test_token_from_another_key_is_401(client, key):
    other = SigningKey.generate()
    _assert_401(client.get("/api/svc/echo", headers=auth(other.sign({"sub": "a"}))))
    # the other key's signature under our kid
    tok = jwt.encode(_claims(), other.private, algorithm="EdDSA", headers={"kid": key.kid})
    _assert_401(client.get("/api/svc/echo", headers=auth(tok)))


def test_garbage_token_is_401(client):
    for junk in ["abc", "a.b.c", "....", "eyJhbGciOiJFZERTQSJ9.e30."]:
        _assert_401(client.get("/api/svc/echo", headers=auth(junk)))


def test_valid_token_passes_and_upstream_sees_headers(client, token):
    tok = token()
    resp = client.get("/api/svc/echo?x=1", headers={**auth(tok), "X-Request-ID": "req-42"})
    assert resp.status_code == 200
    seen = resp.get_json()
    assert seen["authorization"] == f"Bearer {tok}"
    assert seen["request_id"] == "req-42" == resp.headers["X-Request-ID"]
    assert seen["path"] == "/echo" and seen["script_root"] == "/api/svc"
    assert seen["query"] == "x=1"


def test_public_routes_pass_without_token(client, upstream):
    assert client.get("/api/svc/healthz").status_code == 200
    assert client.head("/api/svc/healthz").status_code == 200
    assert client.post("/api/identity/accounts", json={}).status_code == 201
    assert client.get("/healthz").get_json() == {"status": "ok", "service": "gateway"}
    assert client.get("/docs").status_code == 200
    assert client.get("/docs/openapi/svc.json").status_code == 200
    # registration is public only for POST, and only on identity
    _assert_401(client.get("/api/identity/accounts"))
    _assert_401(client.post("/api/svc/accounts", json={}))


def test_public_route_with_bad_token_is_401(client, key):
    _assert_401(client.get("/api/svc/healthz", headers=auth("not-a-token")))
    _assert_401(client.get("/docs", headers=auth(key.sign({"sub": "a"}, ttl=-60))))


def test_public_route_with_valid_token_passes(client, token):
    resp = client.post("/api/identity/accounts", json={}, headers=auth(token()))
    assert resp.status_code == 201


def test_custom_public_routes_replace_defaults(build, upstream, token):
    from werkzeug.test import Client

    gw = Client(build({"svc": upstream}, public_routes=[("GET|POST", r"/api/svc/echo")]))
    assert gw.get("/api/svc/echo").status_code == 200
    assert gw.post("/api/svc/echo").status_code == 200
    assert gw.get("/api/svc/healthz").status_code == 401
    assert gw.get("/api/svc/healthz", headers=auth(token())).status_code == 200


def test_unreachable_jwks_is_503_not_401(upstream):
    """The client's token may be fine; the gateway just cannot judge it now."""
    from werkzeug.test import Client

    from gateway import MemoryRateLimiter, create_gateway
    from servicekit.tokens import TokenVerifier

    def down() -> dict:
        raise ConnectionError("jwks unreachable")

    gw = Client(create_gateway(upstreams={"svc": upstream}, verifier=TokenVerifier(down),
                               rate_limiter=MemoryRateLimiter(100, 60), trust_forwarded=False))
    resp = gw.get("/api/svc/echo", headers=auth(SigningKey.generate().sign({"sub": "a"})))
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert resp.get_json()["type"].endswith("/keys-unavailable")
    assert upstream.config["calls"] == []


def test_each_authentication_refusal_is_one_chained_audit_line_with_the_client_address(
        client, token, tmp_path, monkeypatch):
    """The gateway has no database: its refusals are ``gateway.audit`` log lines, chained
    per process, and ``ecourt audit verify-log`` finds a line changed or removed."""
    import io

    from gateway import app
    from servicekit.chain import LogChain
    from servicekit.logs import json_handler

    monkeypatch.setattr(app, "AUDIT_CHAIN", LogChain("gateway"))  # this test's lines alone
    out = io.StringIO()
    handler, logger = json_handler("gateway", out), logging.getLogger("gateway.audit")
    logger.addHandler(handler)
    try:
        head, payload, _sig = token().split(".")
        _assert_401(client.get("/api/svc/echo", headers=auth(f"{head}.{payload}.AAAA"),
                               environ_base={"REMOTE_ADDR": "198.51.100.23"}))
        _assert_401(client.get("/api/svc/echo", environ_base={"REMOTE_ADDR": "198.51.100.24"}))
        assert client.get("/api/svc/echo", headers=auth(token())).status_code == 200
        _assert_401(client.get("/api/svc/echo", environ_base={"REMOTE_ADDR": "198.51.100.25"}))
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(raw) for raw in out.getvalue().splitlines()]
    assert [(x["decision"], x["problem"], x["client_ip"], x["path"]) for x in lines] == [
        ("auth.rejected", "invalid-token", "198.51.100.23", "/api/svc/echo"),
        ("auth.rejected", "authentication-required", "198.51.100.24", "/api/svc/echo"),
        ("auth.rejected", "authentication-required", "198.51.100.25", "/api/svc/echo")]
    assert len({x["chain"] for x in lines}) == 1
    assert [x["seq"] for x in lines] == [1, 2, 3]

    def verify(kept: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "gateway.log"
        path.write_text("\n".join(json.dumps(x) for x in kept) + "\n", encoding="utf-8")
        return subprocess.run([sys.executable, "-m", "ecourt.cli", "audit", "verify-log",
                               str(path)], capture_output=True, text=True, timeout=120,
                              check=False, env={**os.environ, "ECOURT_LOG_LEVEL": "WARNING"})

    assert verify(lines).returncode == 0
    altered = [dict(x) for x in lines]
    altered[1]["client_ip"] = "203.0.113.1"
    broken = verify(altered)
    assert broken.returncode == 1 and "altered" in broken.stderr
    missing = verify(lines[:1] + lines[2:])
    assert missing.returncode == 1 and "missing" in missing.stderr
