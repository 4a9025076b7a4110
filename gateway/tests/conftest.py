"""Fixtures: a signing key and verifier, a tiny Flask upstream (in process or served over HTTP on
127.0.0.1), and a gateway factory. Nothing here depends on the real services."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server
from werkzeug.test import Client

from gateway import MemoryRateLimiter, create_gateway
from servicekit.tokens import SigningKey, TokenVerifier


@pytest.fixture(scope="session")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="session")
def verifier(key: SigningKey) -> TokenVerifier:
    return TokenVerifier(lambda: {"keys": [key.jwk()]})


@pytest.fixture
def token(key: SigningKey) -> Callable[..., str]:
    def make(sub: str = "acct-1", **claims: Any) -> str:
        return key.sign({"sub": sub, "roles": ["party"], **claims})
    return make


def make_upstream(name: str = "tiny") -> Flask:
    app = Flask(name)
    app.config["calls"] = []

    @app.before_request
    def record() -> None:
        app.config["calls"].append(request.path)

    @app.route("/echo", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def echo():  # type: ignore[no-untyped-def]
        body = request.get_data()
        return jsonify(
            method=request.method, path=request.path, script_root=request.script_root,
            query=request.query_string.decode(),
            authorization=request.headers.get("Authorization"),
            request_id=request.headers.get("X-Request-ID"),
            service_token=request.headers.get("X-Service-Token"),
            forwarded_for=request.headers.get("X-Forwarded-For"),
            forwarded_proto=request.headers.get("X-Forwarded-Proto"),
            forwarded_host=request.headers.get("X-Forwarded-Host"),
            forwarded_prefix=request.headers.get("X-Forwarded-Prefix"),
            custom=request.headers.get("X-Custom"), secret_hop=request.headers.get("X-Hop"),
            cookie=request.headers.get("Cookie"), remote_port=request.environ.get("REMOTE_PORT"),
            body_len=len(body), body_sha=hashlib.sha256(body).hexdigest())

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        return jsonify(status="ok")

    @app.get("/openapi.json")
    def openapi():  # type: ignore[no-untyped-def]
        return jsonify(openapi="3.0.3", info={"title": name, "version": "1"},
                       servers=[{"url": "http://internal-host:8000"}], paths={"/echo": {}})

    @app.get("/internal/secret")
    def internal_secret():  # type: ignore[no-untyped-def]
        return jsonify(secret="for services only")

    @app.post("/accounts")
    def register():  # type: ignore[no-untyped-def]
        return jsonify(id="new"), 201

    @app.get("/fail")
    def fail():  # type: ignore[no-untyped-def]
        return Response('{"upstream": "down for maintenance"}', status=503,
                        content_type="application/json", headers={"X-Upstream": "yes"})

    @app.get("/slow")
    def slow():  # type: ignore[no-untyped-def]
        time.sleep(float(request.args.get("t", "2")))
        return jsonify(slept=True)

    @app.get("/cookies")
    def cookies():  # type: ignore[no-untyped-def]
        resp = jsonify(ok=True)
        resp.set_cookie("a", "1")
        resp.set_cookie("b", "2")
        return resp

    @app.get("/big")
    def big():  # type: ignore[no-untyped-def]
        def chunks() -> Iterator[bytes]:
            for i in range(64):
                yield bytes([i % 251]) * 16384
        return Response(chunks(), content_type="application/octet-stream")

    return app


@pytest.fixture
def upstream() -> Flask:
    return make_upstream()


class LiveServer:
    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Any], LiveServer]]:
    servers: list[LiveServer] = []

    def start(app: Any) -> LiveServer:
        servers.append(LiveServer(app))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def build(verifier: TokenVerifier) -> Callable[..., Any]:
    """``build(upstreams, **kwargs)`` -> the gateway; a generous memory limiter by default."""
    def make(upstreams: dict[str, Any], **kwargs: Any) -> Any:
        kwargs.setdefault("rate_limiter", MemoryRateLimiter(10_000, 60))
        kwargs.setdefault("trust_forwarded", False)
        return create_gateway(upstreams=upstreams, verifier=verifier, **kwargs)
    return make


@pytest.fixture
def client(build: Callable[..., Any], upstream: Flask) -> Client:
    """A gateway over the tiny upstream mounted in process as ``svc`` and as ``identity``."""
    return Client(build({"svc": upstream, "identity": upstream}))


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


#: A request with headers the gateway must keep, drop or replace; see ``check_forwarded``.
FORWARD_PROBE_PATH = "/api/svc/echo?a=1&b=%E4%B8%AD"


def forward_probe_headers(tok: str, request_id: str) -> dict[str, str]:
    return {**auth(tok), "X-Request-ID": request_id, "X-Custom": "kept",
            "X-Service-Token": "guess", "Connection": "X-Hop", "X-Hop": "dropped",
            "X-Forwarded-For": "6.6.6.6"}


def check_forwarded(seen: dict[str, Any], answer_request_id: str, tok: str, request_id: str,
                    client_address: str) -> None:
    """What the upstream saw of the probe: path and query as sent, the token and request id,
    custom headers kept, hop-by-hop and service headers dropped, forwarded headers replaced
    (the incoming chain is untrusted: the client's ``6.6.6.6`` stays, left of the peer)."""
    assert seen["path"] == "/echo" and seen["query"] == "a=1&b=%E4%B8%AD"
    assert seen["authorization"] == f"Bearer {tok}"
    assert seen["request_id"] == request_id == answer_request_id
    assert seen["custom"] == "kept"
    assert seen["service_token"] is None and seen["secret_hop"] is None
    assert seen["forwarded_for"] == f"6.6.6.6, {client_address}"
    assert seen["forwarded_proto"] == "http" and seen["forwarded_prefix"] == "/api/svc"
