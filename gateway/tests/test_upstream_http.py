"""Forwarding over HTTP to a real local server: pooling, streaming, headers, 502 and 504."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from werkzeug.test import Client

from gateway.tests.conftest import (
    FORWARD_PROBE_PATH,
    auth,
    check_forwarded,
    forward_probe_headers,
    make_upstream,
)


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def _problem(resp, status, slug):  # type: ignore[no-untyped-def]
    assert resp.status_code == status
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["status"] == status and body["type"].endswith("/" + slug)
    assert body["request_id"] == resp.headers["X-Request-ID"]
    return body


def test_http_forwarding_headers_and_query(build, serve, token):
    live = serve(make_upstream())
    gw = Client(build({"svc": live.url}))
    tok = token()
    resp = gw.get(FORWARD_PROBE_PATH, headers=forward_probe_headers(tok, "http-1"),
                  environ_base={"REMOTE_ADDR": "198.51.100.4"})
    assert resp.status_code == 200
    check_forwarded(resp.get_json(), resp.headers["X-Request-ID"], tok, "http-1", "198.51.100.4")


def test_trusted_forwarded_chain_ends_with_the_client(build, serve, token):
    """Behind our proxy (the peer 10.0.0.2) the chain goes on as it came, its right-most hop
    the client; the proxy is not appended after it (it was: every client looked like it)."""
    live = serve(make_upstream())
    gw = Client(build({"svc": live.url}, trust_forwarded=True))
    resp = gw.get("/api/svc/echo", headers=[
        *auth(token()).items(), ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")],
        environ_base={"REMOTE_ADDR": "10.0.0.2"})
    seen = resp.get_json()
    assert seen["forwarded_for"] == "6.6.6.6, 203.0.113.7"
    assert seen["forwarded_proto"] == "https"


def test_http_upstream_5xx_passes_through(build, serve, token):
    live = serve(make_upstream())
    resp = Client(build({"svc": live.url})).get("/api/svc/fail", headers=auth(token()))
    assert resp.status_code == 503
    assert resp.get_json() == {"upstream": "down for maintenance"}
    assert resp.headers["X-Upstream"] == "yes"
    assert resp.headers["Content-Type"] == "application/json"


def test_upstream_down_is_502(build, token):
    gw = Client(build({"svc": f"http://127.0.0.1:{_closed_port()}"}))
    body = _problem(gw.get("/api/svc/echo", headers=auth(token())), 502, "bad-gateway")
    assert "127.0.0.1" not in body.get("detail", "")
    gw = Client(build({"svc": "http://no-such-host.invalid:8000"}))
    _problem(gw.get("/api/svc/echo", headers=auth(token())), 502, "bad-gateway")


def test_upstream_timeout_is_504(build, serve, token):
    live = serve(make_upstream())
    gw = Client(build({"svc": live.url}, timeout=0.5))
    _problem(gw.get("/api/svc/slow?t=1.5", headers=auth(token())), 504, "gateway-timeout")
    assert gw.get("/api/svc/slow?t=0", headers=auth(token())).status_code == 200


def test_streaming_upload_and_download(build, serve, token):
    live = serve(make_upstream())
    gw = Client(build({"svc": live.url}))
    payload = os.urandom(3 * 1024 * 1024 + 7)
    resp = gw.post("/api/svc/echo", data=payload, headers={
        **auth(token()), "Content-Type": "application/octet-stream"})
    seen = resp.get_json()
    assert seen["body_len"] == len(payload)
    assert seen["body_sha"] == hashlib.sha256(payload).hexdigest()
    resp = gw.get("/api/svc/big", headers=auth(token()))
    assert resp.status_code == 200 and len(resp.data) == 64 * 16384
    assert "Transfer-Encoding" not in resp.headers


def test_cookies_pass_through_but_are_never_shared(build, serve, token):
    live = serve(make_upstream())
    gw = Client(build({"svc": live.url}), use_cookies=False)
    resp = gw.get("/api/svc/cookies", headers=auth(token()))
    cookies = resp.headers.getlist("Set-Cookie")
    assert len(cookies) == 2 and {c.split(";")[0] for c in cookies} == {"a=1", "b=2"}
    # the gateway's session must not replay one client's cookies for the next client
    assert gw.get("/api/svc/echo", headers=auth(token("other"))).get_json()["cookie"] is None


def test_end_to_end_through_a_served_gateway(build, serve, token):
    """Gateway and upstream both behind real HTTP servers."""
    live = serve(make_upstream())
    gateway = build({"svc": live.url})
    front = serve(gateway)
    with requests.Session() as http:
        for i in range(20):
            resp = http.get(f"{front.url}/api/svc/echo", headers={
                **auth(token()), "X-Request-ID": f"e2e-{i}"}, timeout=5)
            assert resp.status_code == 200
            assert resp.json()["request_id"] == f"e2e-{i}" == resp.headers["X-Request-ID"]
            if i == 10:
                big = http.get(f"{front.url}/api/svc/big", headers=auth(token()), timeout=5)
                assert len(big.content) == 64 * 16384
        # a chunked upload (no Content-Length) is streamed on, chunked
        parts = [os.urandom(50_000) for _ in range(5)]
        resp = http.post(f"{front.url}/api/svc/echo", data=iter(parts), headers=auth(token()),
                         timeout=5)
        assert resp.json()["body_sha"] == hashlib.sha256(b"".join(parts)).hexdigest()
        resp = http.head(f"{front.url}/api/svc/healthz", timeout=5)
        assert resp.status_code == 200 and resp.content == b""
        resp = http.get(f"{front.url}/api/svc/echo", timeout=5)
        assert resp.status_code == 401
        assert resp.headers["Content-Type"] == "application/problem+json"


class _KeepAlive(BaseHTTPRequestHandler):
    """A keep-alive HTTP/1.1 upstream (werkzeug's dev server always closes connections)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        size = 200_000 if self.path.startswith("/big") else 0
        body = json.dumps({"port": self.client_address[1]}).encode() + b" " * size
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_upstream_connections_are_pooled_and_reused(build, token):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        gw = Client(build({"svc": f"http://127.0.0.1:{server.server_port}"}))
        ports = set()
        for path in ["/a", "/big", "/b", "/big", "/c"]:
            resp = gw.get(f"/api/svc{path}", headers=auth(token()))
            assert resp.status_code == 200
            ports.add(json.loads(resp.data)["port"])
            assert "Connection" not in resp.headers and "Keep-Alive" not in resp.headers
        assert len(ports) == 1  # one connection, given back to the pool after each body
    finally:
        server.shutdown()
        server.server_close()
