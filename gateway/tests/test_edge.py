"""The asyncio front end (``gateway.edge``) over real sockets: the same policy as the WSGI app
(tokens, limits, routing, problems, headers), plus what only a proxy of its own must get right —
keep-alive both ways, streaming with framing, size limits, timeouts, pipelining, and gunicorn's
worker (``ecourt serve gateway``) starting, answering and stopping on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import uvloop
from prometheus_client import REGISTRY

from gateway import MemoryRateLimiter
from gateway.edge import EdgeServer, EdgeSettings
from gateway.tests.conftest import (
    FORWARD_PROBE_PATH,
    auth,
    check_forwarded,
    forward_probe_headers,
    make_upstream,
)
from gateway.tests.test_upstream_http import _closed_port, _KeepAlive
from servicekit.testing import answers_ok, wait_for


class EdgeFront:
    """An ``EdgeServer`` on its own uvloop thread, listening on a free loopback port."""

    def __init__(self, gateway: Any, settings: EdgeSettings) -> None:
        self.loop = uvloop.new_event_loop()
        self.executor = ThreadPoolExecutor(4)
        self.edge = EdgeServer(gateway, self.executor, settings)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.port = sock.getsockname()[1]
        self._stop: asyncio.Event | None = None
        ready = threading.Event()

        async def main() -> None:
            self._stop = asyncio.Event()
            server = await self.loop.create_server(self.edge.protocol, sock=sock)
            sweeper = asyncio.get_running_loop().create_task(
                self.edge.sweeper(self._stop, every=0.05))
            ready.set()
            await self._stop.wait()
            server.close()
            await self.edge.drain(2.0)
            await sweeper

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),),
                                       daemon=True)
        self.thread.start()
        assert ready.wait(5)

    def stop(self) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(5)
        self.executor.shutdown(wait=False)


@pytest.fixture
def front(build: Callable[..., Any]) -> Iterator[Callable[..., EdgeFront]]:
    started: list[EdgeFront] = []

    def start(upstreams: dict[str, Any], settings: EdgeSettings | None = None,
              **kwargs: Any) -> EdgeFront:
        started.append(EdgeFront(build(upstreams, **kwargs), settings or EdgeSettings()))
        return started[-1]

    yield start
    for edge in started:
        edge.stop()


def _problem(resp: requests.Response, status: int, slug: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/problem+json"
    body = resp.json()
    assert body["status"] == status and body["type"].endswith("/" + slug)
    assert body["request_id"] == resp.headers["X-Request-ID"]
    return body


def _raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


# -- the same policy as the WSGI app ------------------------------------------------------------


def test_forwards_path_query_and_headers(front, serve, token):
    live = serve(make_upstream())
    edge = front({"svc": live.url})
    tok = token()
    resp = requests.get(edge.url + FORWARD_PROBE_PATH,
                        headers=forward_probe_headers(tok, "edge-1"), timeout=5)
    assert resp.status_code == 200
    check_forwarded(resp.json(), resp.headers["X-Request-ID"], tok, "edge-1", "127.0.0.1")


def _get(edge: EdgeFront, path: str, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    """A GET with ``headers`` as given, one line each (a name may repeat)."""
    conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=5)
    try:
        conn.putrequest("GET", path)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_trusted_forwarded_chain_ends_with_the_client(front, serve, token):
    """Behind our proxy the chain goes on as it came: its right-most hop is the client, and the
    proxy's own address (the peer) is not appended after it (it used to be: every client
    looked like the proxy to the services' throttles and audit trail)."""
    live = serve(make_upstream())
    edge = front({"svc": live.url}, trust_forwarded=True)
    resp = requests.get(f"{edge.url}/api/svc/echo", headers={
        **auth(token()), "X-Forwarded-For": "6.6.6.6, 203.0.113.7",
        "X-Forwarded-Proto": "https"}, timeout=5)
    seen = resp.json()
    assert seen["forwarded_for"] == "6.6.6.6, 203.0.113.7"
    assert seen["forwarded_proto"] == "https"


def test_trusted_forwarded_lines_are_one_list(front, serve, token):
    """A proxy that adds its own ``X-Forwarded-For`` line after the client's: both lines are
    read, in order, so the proxy's line decides the rate-limit key and ends the chain the
    service receives (only the client's first line was read, so it chose its own key)."""
    live = serve(make_upstream())
    edge = front({"svc": live.url}, trust_forwarded=True,
                 rate_limiter=MemoryRateLimiter(1, 60))
    status, body = _get(edge, "/api/svc/echo", [
        ("Authorization", f"Bearer {token()}"), ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-For", "203.0.113.7")])
    assert status == 200
    assert json.loads(body)["forwarded_for"] == "6.6.6.6, 203.0.113.7"
    # anonymous: counted against 203.0.113.7 whatever the client's own line says
    for forged, expected in (("1.1.1.1", 200), ("2.2.2.2", 429)):
        status, _ = _get(edge, "/api/svc/healthz", [
            ("X-Forwarded-For", forged), ("X-Forwarded-For", "203.0.113.7")])
        assert status == expected, forged


def test_trusted_forwarded_proto_and_host_are_the_nearest_proxys(front, serve, token):
    """A proxy that adds its own ``X-Forwarded-Proto/Host`` lines after the client's: the
    service receives one value each, the proxy's, over HTTP (the client's first line was passed
    on) and in process (none was set, or the client's own)."""
    live = serve(make_upstream())
    edge = front({"svc": live.url, "local": make_upstream()}, trust_forwarded=True)
    for service in ("svc", "local"):
        status, body = _get(edge, f"/api/{service}/echo", [
            ("Authorization", f"Bearer {token()}"), ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "portal.court")])
        assert status == 200, service
        seen = json.loads(body)
        assert (seen["forwarded_proto"], seen["forwarded_host"], seen["forwarded_prefix"]) \
            == ("http", "portal.court", f"/api/{service}"), service


def test_untrusted_forwarded_chain_ends_with_the_peer(front, serve, token):
    """Not trusted: the received lines, in order, then the peer. A forged right-most hop
    stays left of the peer, over HTTP and in process (an in-process service used to get the
    client's header unchanged, so the client wrote the address in its audit trail)."""
    live = serve(make_upstream())
    edge = front({"svc": live.url, "local": make_upstream()})
    for service in ("svc", "local"):
        status, body = _get(edge, f"/api/{service}/echo", [
            ("Authorization", f"Bearer {token()}"), ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-For", "203.0.113.7")])
        assert status == 200, service
        assert json.loads(body)["forwarded_for"] == "6.6.6.6, 203.0.113.7, 127.0.0.1", service


def test_refusals_are_the_gateways_problems(front, serve, token, key):
    live = serve(make_upstream())
    edge = front({"svc": live.url})
    body = _problem(requests.get(f"{edge.url}/api/svc/echo", timeout=5), 401,
                    "authentication-required")
    assert body["instance"] == "/api/svc/echo"
    body = _problem(requests.get(f"{edge.url}/api/svc/案件/(2021)粤01民初8号", timeout=5), 401,
                    "authentication-required")
    assert body["instance"] == "/api/svc/案件/(2021)粤01民初8号"  # as the WSGI gateway says it
    tok = token()
    tampered = tok[:-4] + ("AAAA" if not tok.endswith("AAAA") else "BBBB")
    _problem(requests.get(f"{edge.url}/api/svc/echo", headers=auth(tampered), timeout=5),
             401, "invalid-token")
    expired = key.sign({"sub": "acct-1", "roles": ["party"]}, ttl=-60)
    _problem(requests.get(f"{edge.url}/api/svc/echo", headers=auth(expired), timeout=5),
             401, "invalid-token")
    _problem(requests.get(f"{edge.url}/api/nope/echo", headers=auth(tok), timeout=5),
             404, "not-found")
    _problem(requests.get(f"{edge.url}/api/svc/internal/secret", headers=auth(tok), timeout=5),
             404, "not-found")
    _problem(requests.get(f"{edge.url}/api/svc/%69nternal/secret", headers=auth(tok),
                          timeout=5), 404, "not-found")
    # the decoded path is what is checked and what the service gets, re-encoded
    assert requests.get(f"{edge.url}/api/svc/%65cho", headers=auth(tok),
                        timeout=5).json()["path"] == "/echo"
    # a public route needs no token
    assert requests.get(f"{edge.url}/api/svc/healthz", timeout=5).json() == {"status": "ok"}
    assert "/internal/secret" not in live.server.app.config["calls"]


def test_dot_segments_and_bad_requests_are_400(front, serve, token):
    edge = front({"svc": serve(make_upstream()).url})
    answer = _raw(edge.port, b"GET /api/svc/x/../internal/secret HTTP/1.1\r\nHost: a\r\n"
                             b"Authorization: Bearer " + token().encode() + b"\r\n"
                             b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"application/problem+json" in answer
    assert _raw(edge.port, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_rate_limit_answers_429_with_retry_after(front, serve, token):
    edge = front({"svc": serve(make_upstream()).url}, rate_limiter=MemoryRateLimiter(2, 60))
    with requests.Session() as http:
        codes = [http.get(f"{edge.url}/api/svc/echo", headers=auth(token()), timeout=5)
                 for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    _problem(codes[2], 429, "rate-limited")
    assert 1 <= int(codes[2].headers["Retry-After"]) <= 60


def test_refusals_before_the_body_count_against_the_rate_limit(front):
    """Anonymous requests refused before their body is read (401) count against the address
    as every other refused request does: a flood of them meets 429."""
    edge = front({"svc": "http://127.0.0.1:1"}, rate_limiter=MemoryRateLimiter(2, 60))
    codes = [requests.post(f"{edge.url}/api/svc/echo", data=b"x" * 1000, timeout=5)
             for _ in range(3)]
    assert [r.status_code for r in codes] == [401, 401, 429]
    _problem(codes[2], 429, "rate-limited")
    assert 1 <= int(codes[2].headers["Retry-After"]) <= 60


def test_upstream_5xx_passes_through(front, serve, token):
    edge = front({"svc": serve(make_upstream()).url})
    resp = requests.get(f"{edge.url}/api/svc/fail", headers=auth(token()), timeout=5)
    assert resp.status_code == 503 and resp.headers["X-Upstream"] == "yes"
    assert resp.json() == {"upstream": "down for maintenance"}


def test_upstream_down_is_502_and_slow_is_504(front, serve, token):
    live = serve(make_upstream())
    edge = front({"down": f"http://127.0.0.1:{_closed_port()}", "svc": live.url}, timeout=0.4)
    _problem(requests.get(f"{edge.url}/api/down/echo", headers=auth(token()), timeout=5),
             502, "bad-gateway")
    started = time.monotonic()
    _problem(requests.get(f"{edge.url}/api/svc/slow?t=3", headers=auth(token()), timeout=5),
             504, "gateway-timeout")
    assert time.monotonic() - started < 2.5


def test_gateway_pages_and_head_are_answered_by_the_wsgi_app(front, serve):
    edge = front({"svc": serve(make_upstream()).url})
    assert requests.get(f"{edge.url}/healthz", timeout=5).json()["service"] == "gateway"
    assert "/api/svc" in requests.get(f"{edge.url}/docs", timeout=5).text
    resp = requests.head(f"{edge.url}/api/svc/healthz", timeout=5)
    assert resp.status_code == 200 and resp.content == b""
    assert resp.headers["X-Request-ID"]
    metrics = requests.get(f"{edge.url}/metrics", timeout=5).text
    assert 'route="/api/svc"' in metrics


def test_access_is_counted_for_forwarded_requests(front, serve):
    from servicekit import metrics

    edge = front({"svc": serve(make_upstream()).url})

    def count() -> float:
        return metrics.HTTP_REQUESTS.labels("gateway", "/api/svc", "GET", "200")._value.get()

    before = count()
    for _ in range(3):
        requests.get(f"{edge.url}/api/svc/healthz", timeout=5)
    wait_for(lambda: count() == before + 3, timeout=5, message="three answers counted")


# -- bodies, framing and connections ------------------------------------------------------------


def test_streaming_download_and_uploads(front, serve, token):
    live = serve(make_upstream())
    edge = front({"svc": live.url, "identity": live.url})
    with requests.Session() as http:
        big = http.get(f"{edge.url}/api/svc/big", headers=auth(token()), timeout=10)
        assert big.status_code == 200
        assert big.content == b"".join(bytes([i % 251]) * 16384 for i in range(64))
        assert big.headers.get("Transfer-Encoding") == "chunked"
        body = os.urandom(3 * 1024 * 1024)
        resp = http.post(f"{edge.url}/api/svc/echo", data=body, headers=auth(token()),
                         timeout=10)
        assert resp.json()["body_sha"] == hashlib.sha256(body).hexdigest()
        parts = [os.urandom(50_000) for _ in range(5)]  # chunked from the client
        resp = http.post(f"{edge.url}/api/svc/echo", data=iter(parts), headers=auth(token()),
                         timeout=10)
        assert resp.json()["body_sha"] == hashlib.sha256(b"".join(parts)).hexdigest()
        resp = http.post(f"{edge.url}/api/identity/accounts", json={}, timeout=5)
        assert resp.status_code == 201  # a public POST, forwarded with its body


def _huge_upstream() -> Any:
    from flask import Flask, Response

    app = Flask("huge")

    @app.get("/huge")
    def huge():  # type: ignore[no-untyped-def]
        return Response((bytes([i % 251]) * 65536 for i in range(256)),
                        content_type="application/octet-stream")

    return app


def test_a_slow_reader_gets_every_byte(front, serve, token, monkeypatch):
    """Back-pressure: while the client reads nothing the service's connection is paused, then
    resumed, and nothing is lost or reordered (16 MiB, more than the sockets buffer)."""
    from gateway.edge_service import Exchange

    paused: list[int] = []
    pause = Exchange.pause
    monkeypatch.setattr(Exchange, "pause", lambda self: (paused.append(1), pause(self))[1])
    edge = front({"svc": serve(_huge_upstream()).url})
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", edge.port))
        sock.sendall(b"GET /api/svc/huge HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                     b"Authorization: Bearer " + token().encode() + b"\r\n\r\n")
        wait_for(lambda: paused, timeout=10, message="the service's connection paused")
        chunks = []
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"chunked" in head
    decoded, at = [], 0
    while True:
        end = body.index(b"\r\n", at)
        size = int(body[at:end], 16)
        if size == 0:
            break
        decoded.append(body[end + 2:end + 2 + size])
        at = end + 4 + size
    assert b"".join(decoded) == b"".join(bytes([i % 251]) * 65536 for i in range(256))


def test_expect_100_continue_is_answered_before_the_body(front, serve, token):
    edge = front({"svc": serve(make_upstream()).url})
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
        sock.sendall(b"POST /api/svc/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n"
                     b"Authorization: Bearer " + token().encode() + b"\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["body_len"] == 5


def test_cookies_pass_through_but_are_never_shared(front, serve, token):
    edge = front({"svc": serve(make_upstream()).url})
    resp = requests.get(f"{edge.url}/api/svc/cookies", headers=auth(token()), timeout=5)
    cookies = resp.raw.headers.getlist("Set-Cookie")
    assert {c.split(";")[0] for c in cookies} == {"a=1", "b=2"}
    seen = requests.get(f"{edge.url}/api/svc/echo", headers=auth(token("other")), timeout=5)
    assert seen.json()["cookie"] is None


class _RecordingUpstream:
    """A raw service that keeps every byte it is sent and answers each connection once."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                with conn:
                    conn.settimeout(0.3)
                    data = b""
                    with contextlib.suppress(OSError):
                        while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                            data += chunk
                    self.received.append(data)
                    with contextlib.suppress(OSError):
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                     b"Connection: close\r\n\r\n{}")


#: requests a proxy and the service behind it could read differently (request smuggling) or
#: that RFC 9112 says must be refused: the status the edge answers, never forwarding them
AMBIGUOUS = {
    "Content-Length and Transfer-Encoding": (
        400, b"POST /api/svc/x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"),
    "two Content-Lengths": (
        400, b"POST /api/svc/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
             b"Content-Length: 40\r\n\r\nabcGET /smuggled HTTP/1.1\r\n\r\n"),
    "a coding before chunked": (
        501, b"POST /api/svc/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked"
             b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    "two Transfer-Encodings": (
        400, b"POST /api/svc/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    "a transfer coding in HTTP/1.0": (
        400, b"POST /api/svc/x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"3\r\nabc\r\n0\r\n\r\n"),
    "two Hosts": (400, b"GET /api/svc/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    "no Host in HTTP/1.1": (400, b"GET /api/svc/x HTTP/1.1\r\nX-A: 1\r\n\r\n"),
    "a folded header": (400, b"GET /api/svc/x HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n b\r\n\r\n"),
    "a space before the colon": (
        400, b"POST /api/svc/x HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\nabc"),
    "a signed Content-Length": (
        400, b"POST /api/svc/x HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc"),
}


@pytest.mark.parametrize("case", list(AMBIGUOUS))
def test_ambiguous_framing_is_refused_and_never_forwarded(front, token, case):
    upstream = _RecordingUpstream()
    edge = front({"svc": upstream.url})
    bearer = b"Authorization: Bearer " + token().encode() + b"\r\n"
    status, raw = AMBIGUOUS[case]
    head, sep, rest = raw.partition(b"\r\n")
    answer = _raw(edge.port, head + sep + bearer + rest, timeout=2)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    assert b"application/problem+json" in answer
    # the same request framed plainly does reach the service: the refusal was the framing
    plain = _raw(edge.port, b"GET /api/svc/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                 + bearer + b"\r\n", timeout=2)
    assert plain.startswith(b"HTTP/1.1 200 ")
    assert len(upstream.received) == 1 and upstream.received[0].startswith(b"GET /x ")


def test_a_request_refused_whatever_its_body_is_answered_before_the_body(front, token):
    """An anonymous client cannot make the gateway buffer a body (up to the body limit, per
    connection) only to be told 401: the refusal is sent as soon as the head is read and the
    body is never read or forwarded; a client that sends it anyway still reads the answer."""
    upstream = _RecordingUpstream()
    edge = front({"svc": upstream.url})

    def head_only(head: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
            sock.sendall(head)
            return sock.recv(65536)

    big = b"Content-Length: 5000000\r\n"
    answer = head_only(b"POST /api/svc/x HTTP/1.1\r\nHost: a\r\n" + big + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 401 ") and b"authentication-required" in answer
    answer = head_only(b"POST /api/svc/x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                       + big + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 401 ") and b"100 Continue" not in answer
    answer = head_only(b"POST /api/nowhere/x HTTP/1.1\r\nHost: a\r\n" + big + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 404 ")
    sent_anyway = requests.post(f"{edge.url}/api/svc/x", data=b"x" * 3_000_000, timeout=10)
    _problem(sent_anyway, 401, "authentication-required")
    assert upstream.received == []
    # with a token the same head waits for its body, which is then forwarded
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
        sock.sendall(b"POST /api/svc/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                     b"Authorization: Bearer " + token().encode() + b"\r\n"
                     b"Content-Length: 5\r\n\r\n")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(100)
        sock.settimeout(5)
        sock.sendall(b"hello")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert len(upstream.received) == 1 and upstream.received[0].startswith(b"POST /x ")


def test_a_refused_client_still_sending_its_body_is_not_reset(front):
    """A lingering close, as nginx's: after the refusal the gateway ends its side (the client
    reads the answer, then EOF) and discards what the client still sends for a while. Closed
    at once, every further segment would draw a reset, and a client stack that drops unread
    data on a reset would lose the answer it was about to read."""
    edge = front({"svc": "http://127.0.0.1:1"})
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
        sock.sendall(b"POST /api/svc/x HTTP/1.1\r\nHost: a\r\nContent-Length: 9000000\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 401 ")
        for _ in range(20):  # the body, sent anyway: no BrokenPipe/ConnectionReset
            sock.sendall(b"x" * 100_000)
            time.sleep(0.005)
        # and once the client is quiet for a while, the connection is closed for good
        wait_for(lambda: not edge.edge.clients, timeout=5,
                 message="the lingering connection to be closed")


def _held(edge: EdgeFront) -> int:
    """The bodies the edge holds, read on its own loop (its connections change there)."""
    async def read() -> int:
        return edge.edge.bodies_held()
    return asyncio.run_coroutine_threadsafe(read(), edge.loop).result(5)


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


def _read_to_end(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_bodies_beyond_the_workers_budget_are_503_before_they_are_read(front, serve, token):
    """A worker holds each admitted body whole until it is forwarded. Past its budget a
    request with a body is told to come back (503 + Retry-After) before the body is read, so
    many uploads at once cost a bounded amount of memory, not the body limit per connection:
    a declared length is reserved as soon as the head is read, a chunked body is counted as
    it grows, small bodies are not checked. Once the bodies held are answered, the same
    request passes; the refused ones never reach the service."""
    app = make_upstream()
    edge = front({"svc": serve(app).url}, EdgeSettings(max_body=300_000, body_budget=500_000))
    bearer = b"Authorization: Bearer " + token().encode() + b"\r\n"
    start = b"POST /api/svc/echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + bearer

    def head(length: int) -> bytes:
        return start + b"Content-Length: %d\r\n\r\n" % length

    with (socket.create_connection(("127.0.0.1", edge.port), timeout=5) as first,
          socket.create_connection(("127.0.0.1", edge.port), timeout=5) as second):
        first.sendall(head(300_000) + b"x" * 1000)
        second.sendall(head(200_000))
        wait_for(lambda: _held(edge) == 500_000, timeout=5,
                 message="both declared bodies to be reserved")
        # operators see it: the sweeper sets the gauges (summed over workers by /metrics)
        wait_for(lambda: _gauge("gateway_request_bodies_bytes") == 500_000
                 and _gauge("gateway_client_connections") == 2, timeout=5,
                 message="the gauges to show the two uploads")
        refused = _raw(edge.port, head(100_000))
        assert refused.startswith(b"HTTP/1.1 503 "), refused[:200]
        assert b"Retry-After: 2\r\n" in refused and b"gateway-busy" in refused
        piece = b"y" * 70_000
        refused = _raw(edge.port, start + b"Transfer-Encoding: chunked\r\n\r\n"
                       + b"%x\r\n%s\r\n0\r\n\r\n" % (len(piece), piece))
        assert refused.startswith(b"HTTP/1.1 503 "), refused[:200]
        small = _raw(edge.port, head(1000) + b"z" * 1000)
        assert small.startswith(b"HTTP/1.1 200 ") and b'"body_len":1000' in small
        first.sendall(b"x" * 299_000)
        assert b'"body_len":300000' in _read_to_end(first)
        second.sendall(b"x" * 200_000)
        assert b'"body_len":200000' in _read_to_end(second)
    wait_for(lambda: _held(edge) == 0, timeout=5, message="the bodies to be let go")
    wait_for(lambda: _gauge("gateway_request_bodies_bytes") == 0, timeout=5,
             message="the gauge to follow")
    again = _raw(edge.port, head(100_000) + b"w" * 100_000)
    assert again.startswith(b"HTTP/1.1 200 ") and b'"body_len":100000' in again
    assert app.config["calls"] == ["/echo"] * 4


def test_size_limits_are_413_and_431(front, serve, token):
    edge = front({"svc": serve(make_upstream()).url},
                 EdgeSettings(max_body=1000, max_head=2000))
    resp = requests.post(f"{edge.url}/api/svc/echo", data=b"x" * 1001, headers=auth(token()),
                         timeout=5)
    _problem(resp, 413, "payload-too-large")
    chunked = requests.post(f"{edge.url}/api/svc/echo", data=iter([b"x" * 600] * 3),
                            headers=auth(token()), timeout=5)
    assert chunked.status_code == 413
    answer = _raw(edge.port, b"GET /api/svc/echo HTTP/1.1\r\nHost: a\r\nX-Big: "
                  + b"y" * 3000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_the_body_limit_is_the_services_own(front, serve, token, monkeypatch):
    """``ECOURT_MAX_BODY_BYTES`` caps bodies at the edge as in every service, so the gateway
    never buffers a body that no service would take."""
    monkeypatch.setenv("ECOURT_MAX_BODY_BYTES", "1500")
    upstream = make_upstream()
    edge = front({"svc": serve(upstream).url})
    ok = requests.post(f"{edge.url}/api/svc/echo", data=b"x" * 1500, headers=auth(token()),
                       timeout=5)
    assert ok.status_code == 200 and ok.json()["body_len"] == 1500
    upstream.config["calls"].clear()
    resp = requests.post(f"{edge.url}/api/svc/echo", data=b"x" * 1501, headers=auth(token()),
                         timeout=5)
    _problem(resp, 413, "payload-too-large")
    assert upstream.config["calls"] == []


@pytest.mark.parametrize("head", [
    b"GET /api/svc/echo HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",  # curl --http2 over http://
    b"GET /api/svc/echo HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
])
def test_a_request_asking_to_switch_protocols_is_answered_without_switching(
        front, serve, token, head):
    """The service's answer reaches the client, and the connection closes after it (as the
    WSGI app ignores ``Upgrade``). The parser's "upgrade" signal came after the request had
    been forwarded, and the connection was aborted: the client got no answer at all."""
    edge = front({"svc": serve(make_upstream()).url})
    answer = _raw(edge.port, head + b"Host: a\r\nAuthorization: Bearer "
                  + token().encode() + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    head_lines, _, body = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head_lines.split(b"\r\n")
    assert json.loads(body)["path"] == "/echo"


def _half_closed(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data``, shut down the sending side (the client's FIN, as ``nc -N`` does once its
    input is sent) and read until the gateway closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_client_that_half_closes_after_its_request_is_answered(front, serve, token):
    """The client's FIN after a whole request says it sends nothing more, not that it stopped
    listening: the answer goes out and the connection is closed after it. The edge closed the
    connection on the FIN (asyncio's default), so a request being forwarded or answered on a
    thread got no answer at all."""
    upstream = make_upstream()
    edge = front({"svc": serve(upstream).url})
    bearer = f"Authorization: Bearer {token()}\r\n".encode()
    for request, status in [
        (b"GET /api/svc/healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"200"),  # forwarded
        (b"POST /api/svc/echo HTTP/1.1\r\nHost: x\r\n" + bearer
         + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", b"200"),
        (b"GET /docs HTTP/1.1\r\nHost: x\r\n\r\n", b"200"),  # the WSGI app's, on a thread
        (b"GET /api/nope/x HTTP/1.0\r\n\r\n", b"404"),
        (b"GET /api/svc/echo HTTP/1.1\r\nHost: x\r\n\r\n", b"401"),  # refused at once
    ]:
        answer = _half_closed(edge.port, request)
        assert answer.startswith(b"HTTP/1.1 " + status), (request, answer[:200])
    # two requests pipelined, then the FIN: both answered in order, then closed
    two = _half_closed(edge.port, b"GET /api/svc/healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                       b"GET /api/svc/echo?n=2 HTTP/1.1\r\nHost: x\r\n" + bearer + b"\r\n")
    assert two.count(b"HTTP/1.1 200 OK") == 2 and two.endswith(b"}\n"), two[-200:]
    assert two.index(b'"status"') < two.index(b'"query":"n=2"')
    assert upstream.config["calls"] == ["/healthz", "/echo", "/healthz", "/echo"]


def test_a_request_cut_short_by_the_clients_fin_is_closed_without_an_answer(front, serve,
                                                                             token):
    """Half a head, or a body shorter than its length, can never be completed: closed at the
    FIN, not held open until a timeout, and nothing is forwarded; what came whole before it
    is answered."""
    upstream = make_upstream()
    edge = front({"svc": serve(upstream).url})
    assert _half_closed(edge.port, b"GET /api/svc/healthz HTTP/1.1\r\nHo") == b""
    assert _half_closed(edge.port, b"POST /api/svc/echo HTTP/1.1\r\nHost: x\r\n"
                        b"Authorization: Bearer " + token().encode() + b"\r\n"
                        b"Content-Length: 10\r\n\r\n{}") == b""
    assert upstream.config["calls"] == []
    # a whole request before the half one is answered still
    first = _half_closed(edge.port, b"GET /api/svc/healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"GET /api/svc/healthz HTTP/1.1\r\nHo")
    assert first.startswith(b"HTTP/1.1 200") and first.count(b"HTTP/1.1") == 1, first
    assert upstream.config["calls"] == ["/healthz"]


def test_bytes_that_are_no_request_after_one_being_answered_wait_for_its_answer(front, serve):
    """A whole request, then bytes that are no request (pipelined in one segment): the request
    is answered, then the 400 and the close, as nginx answers; the edge aborted the connection
    at the bad bytes and the answer under way was lost. After a last request (HTTP/1.0, or
    ``Connection: close``) what follows is not looked at."""
    upstream = make_upstream()
    edge = front({"svc": serve(upstream).url})
    healthz = b"GET /api/svc/healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    for garbage in (b"\x1e\x8c junk\r\n\r\n", b"GET /api/svc/healthz HTTP/9.9\r\n\r\n"):
        answer = _raw(edge.port, healthz + healthz + garbage)
        assert re.findall(rb"HTTP/1\.1 (\d{3})", answer) == [b"200", b"200", b"400"], answer
        assert b"/bad-request" in answer
    last = _raw(edge.port, b"GET /api/svc/healthz HTTP/1.0\r\n\r\n\x91\xbf junk")
    assert last.startswith(b"HTTP/1.1 200") and b"400" not in last.split(b"\r\n")[0]
    assert last.count(b"HTTP/1.1 ") == 1, last
    assert upstream.config["calls"] == ["/healthz"] * 5


def test_keep_alive_both_ways_and_pipelining(front, token):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        edge = front({"svc": f"http://127.0.0.1:{server.server_port}"})
        ports = set()
        with requests.Session() as http:
            for path in ["/a", "/big", "/b", "/big", "/c"]:
                resp = http.get(f"{edge.url}/api/svc{path}", headers=auth(token()), timeout=5)
                assert resp.status_code == 200
                ports.add(json.loads(resp.content)["port"])
                assert "Keep-Alive" not in resp.headers
        assert len(ports) == 1  # one pooled connection to the service, reused
        tok = token().encode()
        one = b"GET /api/svc/%s HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " + tok + b"\r\n"
        pipelined = (one % b"first" + b"\r\n" + one % b"second" + b"\r\n"
                     + one % b"third" + b"Connection: close\r\n\r\n")
        answer = _raw(edge.port, pipelined)
        assert answer.count(b"HTTP/1.1 200 ") == 3
        assert answer.rstrip().endswith(b"}")
    finally:
        server.shutdown()
        server.server_close()


def test_idle_client_connections_are_closed(front, serve):
    edge = front({"svc": serve(make_upstream()).url}, EdgeSettings(keepalive=0.2))
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(0.6)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")  # answered, then closed for idling


def test_a_client_silent_mid_request_is_cut_off(front, serve):
    edge = front({"svc": serve(make_upstream()).url}, EdgeSettings(client_timeout=0.2))
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")  # never finished
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):  # closed or aborted: both cut it off
            assert sock.recv(100) == b""
    assert time.monotonic() - started < 3


def test_a_head_trickled_past_its_deadline_is_408(front, serve):
    """Slowloris: a client that sends its head a byte at a time is never silent long enough
    for the silence limits, so the whole head has a deadline of its own (nginx's
    client_header_timeout); past it the client is told 408 and the connection ends."""
    edge = front({"svc": serve(make_upstream()).url},
                 EdgeSettings(client_timeout=5, head_timeout=0.5))
    answer = b""
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
        sock.sendall(b"GET /api/svc/echo HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        started = time.monotonic()
        sock.settimeout(0.1)
        with contextlib.suppress(OSError):  # the edge ends the connection: a pipe error
            while time.monotonic() - started < 4:
                sock.sendall(b"x")
                with contextlib.suppress(TimeoutError):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 ") and b"request-timeout" in answer, answer[:200]
    assert time.monotonic() - started < 3


class _OneAnswerPerConnection(socketserver.BaseRequestHandler):
    """Answers the first request on a connection (keep-alive), then closes the connection on
    the second without answering: a service closing an idle connection just as it is reused."""

    def handle(self) -> None:
        for turn in range(2):
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = self.request.recv(65536)
                if not chunk:
                    return
                data += chunk
            if turn == 1:
                return
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                 b"Content-Type: application/json\r\n\r\n{}")


def test_a_reused_connection_found_closed_is_retried_only_when_idempotent(front, token):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _OneAnswerPerConnection)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        edge = front({"svc": f"http://127.0.0.1:{server.server_address[1]}"})
        with requests.Session() as http:
            for _ in range(3):  # each one after the first finds its pooled connection closed
                assert http.get(f"{edge.url}/api/svc/x", headers=auth(token()),
                                timeout=5).status_code == 200
            resp = http.post(f"{edge.url}/api/svc/x", data=b"{}", headers=auth(token()),
                             timeout=5)
        _problem(resp, 502, "bad-gateway")  # a POST is never sent twice
    finally:
        server.shutdown()
        server.server_close()


def test_client_gone_mid_answer_frees_everything(front, serve, token):
    edge = front({"svc": serve(make_upstream()).url})
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
        sock.sendall(b"GET /api/svc/slow?t=0.5 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer "
                     + token().encode() + b"\r\n\r\n")
    wait_for(lambda: not edge.edge.clients, timeout=5, message="the client connection freed")
    resp = requests.get(f"{edge.url}/api/svc/echo", headers=auth(token()), timeout=5)
    assert resp.status_code == 200


# -- the gunicorn worker ------------------------------------------------------------------------


def test_ecourt_serve_gateway_runs_the_edge_worker(serve, tmp_path: Path, key):
    live = serve(make_upstream())
    jwks = serve(_jwks_app(key))
    port = _closed_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ECOURT_", "GATEWAY_", "PROMETHEUS_"))}
    from ecourt import registry

    for name in registry.API_SERVICES:
        env[f"GATEWAY_UPSTREAM_{name.upper()}"] = live.url
    env.update(ECOURT_JWKS_URL=f"{jwks.url}/jwks", PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
               XDG_RUNTIME_DIR=str(tmp_path), ECOURT_LOG_LEVEL="WARNING")
    log = (tmp_path / "gateway.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "ecourt.cli", "serve", "gateway", "--bind",
                             f"127.0.0.1:{port}", "--workers", "2"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers_ok(f"{base}/healthz"), timeout=60, message="the gateway")
        service = registry.API_SERVICES[0]
        tok = key.sign({"sub": "acct-9", "roles": ["party"]})
        resp = requests.get(f"{base}/api/{service}/echo", headers=auth(tok), timeout=5)
        assert resp.status_code == 200 and resp.json()["authorization"] == f"Bearer {tok}"
        assert requests.get(f"{base}/api/{service}/echo", timeout=5).status_code == 401
        assert "EdgeWorker" in (tmp_path / "gateway.log").read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()



def _jwks_app(key: Any) -> Any:
    from flask import Flask, jsonify

    app = Flask("jwks")
    app.add_url_rule("/jwks", "jwks", lambda: jsonify(keys=[key.jwk()]))
    return app


# -- decisions that need I/O run off the event loop ---------------------------------------------


@pytest.mark.real
def test_redis_limiter_counts_through_the_edge(front, serve, token):
    from gateway.ratelimit import RedisRateLimiter
    from gateway.tests.test_ratelimit import REDIS_URL, _redis_or_skip

    client = _redis_or_skip()
    prefix = f"ecourt:rl:edge:{os.urandom(6).hex()}:"
    try:
        edge = front({"svc": serve(make_upstream()).url}, rate_limiter=RedisRateLimiter(
            REDIS_URL, limit=2, window_seconds=30, prefix=prefix))
        with requests.Session() as http:
            codes = [http.get(f"{edge.url}/api/svc/echo", headers=auth(token("r")), timeout=5)
                     .status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert client.get(prefix + "sub:r") == b"3"
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)


def test_first_token_fetches_the_jwks_off_the_loop(serve, key, token):
    from gateway import create_gateway
    from servicekit.tokens import TokenVerifier, http_jwks_source

    jwks = serve(_jwks_app(key))
    fetches: list[float] = []
    source = http_jwks_source(f"{jwks.url}/jwks")

    def counted() -> dict[str, Any]:
        fetches.append(time.monotonic())
        return source()

    live = serve(make_upstream())
    gateway = create_gateway(upstreams={"svc": live.url}, verifier=TokenVerifier(counted),
                             rate_limiter=MemoryRateLimiter(100, 60), trust_forwarded=False)
    edge = EdgeFront(gateway, EdgeSettings())
    try:
        for _ in range(3):
            resp = requests.get(f"{edge.url}/api/svc/echo", headers=auth(token()), timeout=5)
            assert resp.status_code == 200
        assert len(fetches) == 1
    finally:
        edge.stop()


def _answer(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_client_address_beyond_its_connection_cap_is_told_429_and_closed(front, serve):
    """With GATEWAY_MAX_CONNECTIONS_PER_CLIENT set, one address cannot take a worker's
    connections for itself: beyond the cap a connection is answered 429 at once and closed,
    and once one of its connections ends the address may open another (failed before: no
    cap, every connection held)."""
    edge = front({"svc": serve(make_upstream()).url}, EdgeSettings(max_client_connections=2))
    first = socket.create_connection(("127.0.0.1", edge.port), timeout=5)
    second = socket.create_connection(("127.0.0.1", edge.port), timeout=5)
    try:
        for sock in (first, second):  # both held, both served
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as third:
            answer = _answer(third)  # told without sending anything, then closed
        assert answer.startswith(b"HTTP/1.1 429 "), answer[:200]
        assert b"too-many-connections" in answer and b"Retry-After: 1" in answer
    finally:
        first.close()
    deadline = time.monotonic() + 5
    while True:  # the edge learns of the close when its loop runs
        with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as again:
            again.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            answer = _answer(again)
        if answer.startswith(b"HTTP/1.1 200 ") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    second.close()


def test_no_cap_by_default(front, serve, monkeypatch):
    monkeypatch.delenv("GATEWAY_MAX_CONNECTIONS_PER_CLIENT", raising=False)
    assert EdgeSettings().max_client_connections == 0
    edge = front({"svc": serve(make_upstream()).url}, EdgeSettings())
    socks = [socket.create_connection(("127.0.0.1", edge.port), timeout=5) for _ in range(20)]
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in socks:
            sock.close()
