"""The gateway's front end in the distributed tier: an asyncio HTTP/1.1 reverse proxy.

Why a second front end: a WSGI worker pays for a thread hand-off, an environ, a ``requests``
call and werkzeug's wrappers around every forwarded request, and on two shared cores that cost
as much CPU as the service's own route (``bench/``: 0.21–0.45 × direct). Here one event loop per
gunicorn worker (``gateway.worker.EdgeWorker``) parses with httptools (llhttp, in C), keeps a
pool of keep-alive connections to each service and moves bytes. Only the decisions are Python,
and they are the WSGI app's own, so the two front ends cannot drift apart:

* ``Gateway.resolve`` and ``Gateway.admit`` decide the route, the token and the rate limit, and
  ``problem_response`` shapes every refusal;
* ``forward_headers``/``clean_response_headers`` are the header rules ``HttpUpstream`` uses;
* whatever is not a plain forward to an HTTP upstream (the gateway's own pages, ``HEAD``, an
  in-process upstream) is answered by the WSGI app itself, run on a thread pool.

Limits and decisions:

* a request body is read whole before it is forwarded (as nginx buffers), up to ``max_body``
  bytes (413 beyond); request line and headers up to ``max_head`` bytes (431 beyond);
* a response body is streamed as it arrives, with back-pressure: when the client reads slowly
  the upstream connection stops being read;
* ``connect_timeout`` is the TCP connect to a service (504), ``read_timeout`` the longest
  silence from a service while its answer is awaited or streamed (504 before the head, an
  aborted client connection after: never a silent truncation);
* an idle pooled connection is used for at most ``pool_idle`` seconds (below the services'
  keep-alive of 5 s), and a request that finds its reused connection closed before any byte of
  the answer is sent again on a new one only when its method is idempotent;
* a client connection idle for ``keepalive`` seconds, or silent for ``read_timeout`` seconds in
  the middle of a request, is closed. Timeouts are checked once a second by a sweeper, so
  the hot path only stamps times.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import httptools

from gateway import routing
from gateway.app import Gateway, record_access
from gateway.ratelimit import MemoryRateLimiter
from gateway.upstream import HttpUpstream, clean_response_headers, encode_path, forward_headers
from servicekit.problems import Problem, problem_response
from servicekit.tokens import KeysNeeded

log = logging.getLogger(__name__)

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_NO_BODY_STATUS = frozenset({204, 304})


@dataclass
class EdgeSettings:
    max_body: int = 64 * 1024 * 1024
    max_head: int = 64 * 1024
    keepalive: float = 15.0
    read_timeout: float = 10.0
    connect_timeout: float = 2.0
    pool_idle: float = 3.0
    pool_max_idle: int = 64


@dataclass
class _Request:
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    method: str = "GET"
    http11: bool = True
    keep_alive: bool = True
    size: int = 0

    def header(self, name: bytes) -> str:
        for key, value in self.headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return ""


class _Refuse(Exception):  # noqa: N818 - a signal out of a parser callback
    """Stop parsing: the request is refused with ``problem`` and the connection closed."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem


# -- the service side -------------------------------------------------------------------------


class _Target:
    """One service's address and its pool of idle keep-alive connections."""

    def __init__(self, upstream: HttpUpstream, settings: EdgeSettings) -> None:
        parts = urlsplit(upstream.base_url)
        self.name = upstream.name
        self.host = parts.hostname or "127.0.0.1"
        self.ssl = parts.scheme == "https"
        self.port = parts.port or (443 if self.ssl else 80)
        self.host_header = parts.netloc.encode("latin-1")
        self.connect_timeout, self.read_timeout = upstream.timeouts
        self.settings = settings
        self.idle: deque[_ServiceConnection] = deque()

    def take(self, now: float) -> _ServiceConnection | None:
        while self.idle:
            conn = self.idle.pop()
            if now - conn.last < self.settings.pool_idle and not conn.closed:
                return conn
            conn.close()
        return None

    def give_back(self, conn: _ServiceConnection) -> None:
        if conn.closed or len(self.idle) >= self.settings.pool_max_idle:
            conn.close()
        else:
            self.idle.append(conn)

    def sweep(self, now: float) -> None:
        while self.idle and now - self.idle[0].last >= self.settings.pool_idle:
            self.idle.popleft().close()

    async def connect(self) -> _ServiceConnection:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: _ServiceConnection(self), self.host, self.port,
                                   ssl=self.ssl or None),
            self.connect_timeout)
        return conn


class _ServiceConnection(asyncio.Protocol):
    """A keep-alive connection to a service; parses its answers for the current exchange."""

    def __init__(self, target: _Target) -> None:
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: _Exchange | None = None
        self.last = time.monotonic()
        self.used = 0
        self.closed = False
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._interim = False

    # asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        exchange = self.exchange
        if exchange is not None:
            exchange.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if exchange is not None:
                exchange.flush()
            log.warning("upstream %s sent a broken response: %s", self.target.name,
                        exc.__class__.__name__)
            self.close()
            return
        if exchange is not None:
            exchange.flush()  # one write to the client per read from the service

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.service_lost(self)

    # httptools
    def on_message_begin(self) -> None:
        self._reason = b""
        self._headers = []

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self._interim = 100 <= status < 200
        if not self._interim and self.exchange is not None:
            self.exchange.answer_head(status, self._reason, self._headers)

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.answer_body(body)

    def on_message_complete(self) -> None:
        if self._interim:  # 100 Continue and the like: the real answer follows
            return
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.answer_end(self, self.parser.should_keep_alive())

    def send(self, exchange: _Exchange, data: bytes) -> None:
        self.exchange = exchange
        self.used += 1
        self.last = time.monotonic()
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


# -- one forwarded request --------------------------------------------------------------------


class _Exchange:
    """A request on its way to a service and its answer on the way back."""

    def __init__(self, edge: EdgeServer, client: _ClientConnection, req: _Request,
                 target: _Target, head: bytes, body: bytes, rid: str, path: str,
                 started: float) -> None:
        self.edge = edge
        self.client = client
        self.req = req
        self.target = target
        self.data = head + body if len(body) < 65536 else head
        self.body = b"" if len(body) < 65536 else body
        self.rid = rid
        self.path = path
        self.started = started
        self.service: _ServiceConnection | None = None
        self.answered = False  # a byte of the answer arrived
        self.head_sent = False
        self.chunked = False
        self.until_close = False  # the service ends its body by closing the connection
        self.out: list[bytes] = []  # answer bytes not yet written to the client
        self.status = 0
        self.done = False
        self.keep_alive = req.keep_alive

    def send_on(self, conn: _ServiceConnection) -> None:
        self.service = conn
        self.answered = False
        conn.send(self, self.data)
        if self.body:
            assert conn.transport is not None
            conn.transport.write(self.body)

    async def connect_and_send(self) -> None:
        try:
            conn = await self.target.connect()
        except TimeoutError:
            log.warning("upstream %s: connect timed out", self.target.name)
            self.fail(Problem(504, "gateway-timeout",
                              f"the {self.target.name} service did not answer in time"))
            return
        except OSError as exc:
            log.warning("upstream %s unreachable: %s", self.target.name, exc.__class__.__name__)
            self.fail(Problem(502, "bad-gateway",
                              f"the {self.target.name} service is unavailable"))
            return
        if self.done:  # the client went away meanwhile
            self.target.give_back(conn)
            return
        self.send_on(conn)

    # the answer
    def answer_head(self, status: int, reason: bytes, raw: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        pairs = clean_response_headers(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in raw)
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason or b"-")]
        framed = any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in raw)
        self.until_close = not framed and status not in _NO_BODY_STATUS
        has_length = False
        for key, value in pairs:
            lower = key.lower()
            if lower == "x-request-id":
                continue
            if lower == "content-length":
                has_length = True
            lines.append(b"%s: %s\r\n" % (key.encode("latin-1"), value.encode("latin-1")))
        lines.append(b"X-Request-ID: %s\r\n" % self.rid.encode())
        if not has_length and status not in _NO_BODY_STATUS:
            if self.req.http11:
                self.chunked = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False
        if not self.keep_alive:
            lines.append(b"Connection: close\r\n")
        elif not self.req.http11:
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        self.head_sent = True
        self.out.append(b"".join(lines))

    def answer_body(self, chunk: bytes) -> None:
        if self.chunked:
            self.out.append(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            self.out.append(chunk)

    def flush(self) -> None:
        if self.out:
            data = self.out[0] if len(self.out) == 1 else b"".join(self.out)
            self.out.clear()
            self.client.write(data)

    def answer_end(self, conn: _ServiceConnection, reusable: bool) -> None:
        if self.chunked:
            self.out.append(b"0\r\n\r\n")
        self.flush()
        self.done = True
        self.service = None
        if reusable:
            self.target.give_back(conn)
        else:
            conn.close()
        self.client.finish(self.keep_alive)
        record_access(self.req.method, self.path, self.status, self.started, self.rid,
                      self.target.name)

    # failures
    def service_lost(self, conn: _ServiceConnection) -> None:
        """The service closed the connection before its answer was complete."""
        if self.done:
            return
        self.service = None
        if self.head_sent and self.until_close:
            self.answer_end(conn, reusable=False)
            return
        if self.head_sent:
            log.warning("upstream %s broke off while streaming", self.target.name)
            self.flush()
            self.abort()
            return
        if conn.used > 1 and not self.answered and self.req.method in IDEMPOTENT:
            # a pooled connection the service had just closed: send it again, once
            self.client.task(self.connect_and_send())
            return
        log.warning("upstream %s closed the connection without an answer", self.target.name)
        self.fail(Problem(502, "bad-gateway", f"the {self.target.name} service failed"))

    def check(self, now: float) -> None:
        conn = self.service
        if conn is None or now - conn.last < self.target.read_timeout:
            return
        log.warning("upstream %s timed out", self.target.name)
        self.service = None
        conn.exchange = None
        conn.close()
        if self.head_sent:
            self.abort()
        else:
            self.fail(Problem(504, "gateway-timeout",
                              f"the {self.target.name} service did not answer in time"))

    def fail(self, problem: Problem) -> None:
        if self.done:
            return
        self.done = True
        self.status = problem.status
        self.client.send_problem(problem, self.path, self.rid, self.keep_alive)
        record_access(self.req.method, self.path, self.status, self.started, self.rid,
                      self.target.name)

    def abort(self) -> None:
        self.done = True
        self.client.abort()
        record_access(self.req.method, self.path, self.status, self.started, self.rid,
                      self.target.name)

    def client_lost(self) -> None:
        if not self.done and self.service is not None:
            self.service.exchange = None
            self.service.close()
        self.done = True

    def pause(self) -> None:
        if self.service is not None and self.service.transport is not None:
            self.service.transport.pause_reading()

    def resume(self) -> None:
        if self.service is not None and self.service.transport is not None:
            self.service.transport.resume_reading()


# -- the client side --------------------------------------------------------------------------


class _ClientConnection(asyncio.Protocol):
    """One client's connection: parses its requests and answers them one after another."""

    def __init__(self, edge: EdgeServer) -> None:
        self.edge = edge
        self.settings = edge.settings
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.remote = ""
        self.current: _Request | None = None
        self.queue: deque[_Request] = deque()
        self.busy = False
        self.exchange: _Exchange | None = None
        self.last = time.monotonic()
        self.head_size = 0
        self.closing = False

    # asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if peer else ""
        self.edge.clients.add(self)

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__ if isinstance(exc.__context__, _Refuse) else None
            if refusal is None:
                log.exception("edge: error while reading a request")
                problem = Problem(500, "internal-error", "an unexpected error occurred")
            else:
                problem = refusal.problem
            self._refuse(problem)
        except httptools.HttpParserUpgrade:
            self._refuse(Problem(400, "bad-request", "protocol upgrades are not supported"))
        except httptools.HttpParserError:
            self._refuse(Problem(400, "bad-request", "the request is not valid HTTP/1.1"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.edge.clients.discard(self)
        if self.exchange is not None:
            self.exchange.client_lost()
            self.exchange = None

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.resume()

    # httptools
    def on_message_begin(self) -> None:
        self.current = _Request()
        self.head_size = 0

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers.append((name, value))
        self._count_head(len(name) + len(value) + 4)

    def _count_head(self, size: int) -> None:
        self.head_size += size
        if self.head_size > self.settings.max_head:
            raise _Refuse(Problem(431, "headers-too-large",
                                  "the request line and headers are too large"))

    def on_headers_complete(self) -> None:
        req = self.current
        assert req is not None
        req.method = self.parser.get_method().decode("latin-1")
        req.http11 = self.parser.get_http_version() == "1.1"
        req.keep_alive = self.parser.should_keep_alive()
        length = req.header(b"content-length")
        if length.isdigit() and int(length) > self.settings.max_body:
            raise _Refuse(self._too_large())

    def on_body(self, body: bytes) -> None:
        req = self.current
        assert req is not None
        req.size += len(body)
        if req.size > self.settings.max_body:
            raise _Refuse(self._too_large())
        req.body.append(body)

    def on_message_complete(self) -> None:
        req, self.current = self.current, None
        assert req is not None
        self.queue.append(req)
        if self.busy and self.transport is not None:
            self.transport.pause_reading()  # one answer at a time; hold further requests
        self._next()

    def _too_large(self) -> Problem:
        return Problem(413, "payload-too-large",
                       f"the request body is larger than {self.settings.max_body} bytes")

    # answering
    def _next(self) -> None:
        if self.busy or self.closing or not self.queue:
            return
        self.busy = True
        req = self.queue.popleft()
        try:
            self.edge.handle(self, req)
        except Exception:
            log.exception("edge: error while handling a request")
            self.busy = False
            self._refuse(Problem(500, "internal-error", "an unexpected error occurred"))

    def finish(self, keep_alive: bool) -> None:
        """The answer to the current request is written."""
        self.exchange = None
        self.busy = False
        self.last = time.monotonic()
        if not keep_alive or self.closing:
            self.closing = True
            if self.transport is not None:
                self.transport.close()
            return
        if self.transport is not None and not self.queue:
            self.transport.resume_reading()
        self._next()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_problem(self, problem: Problem, path: str, rid: str, keep_alive: bool) -> None:
        resp = problem_response(problem, path, rid)
        headers = [*resp.headers.to_wsgi_list(), (routing.REQUEST_ID_HEADER, rid)]
        self.send(resp.status, headers, resp.get_data(), keep_alive)

    def send(self, status: str, headers: Iterable[tuple[str, str]], body: bytes,
             keep_alive: bool, head_only: bool = False) -> None:
        """Write a whole answer (problems and the WSGI app's pages) and finish."""
        lines = [f"HTTP/1.1 {status}\r\n".encode("latin-1")]
        length = None
        for key, value in clean_response_headers(headers):
            if key.lower() == "content-length":
                length = value
                continue
            lines.append(f"{key}: {value}\r\n".encode("latin-1"))
        if not head_only:
            length = str(len(body))
        if length is not None:
            lines.append(b"Content-Length: %s\r\n" % length.encode("latin-1"))
        if not keep_alive:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        if not head_only:
            lines.append(body)
        self.write(b"".join(lines))
        self.finish(keep_alive)

    def _refuse(self, problem: Problem) -> None:
        """Answer a request that could not be read, then close the connection."""
        rid = routing.request_id_from("")
        if self.exchange is None and not self.busy:
            self.busy = True
            self.send_problem(problem, "", rid, keep_alive=False)
        else:
            self.abort()
        record_access("-", "", problem.status, time.perf_counter(), rid, None)

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def task(self, coro: Any) -> None:
        self.edge.spawn(coro)

    def check(self, now: float) -> None:
        """Called by the sweeper: close what has been idle or silent too long."""
        if self.exchange is not None:
            self.exchange.check(now)
        elif not self.busy:
            limit = self.settings.read_timeout if self.current else self.settings.keepalive
            if now - self.last <= limit:
                return
            if self.current:
                self.abort()
            else:
                self._close_idle()

    def _close_idle(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


# -- the server -------------------------------------------------------------------------------


class EdgeServer:
    """Builds client protocols for ``loop.create_server`` and answers their requests."""

    def __init__(self, gateway: Gateway, executor: Executor,
                 settings: EdgeSettings | None = None) -> None:
        self.gateway = gateway
        self.executor = executor
        self.settings = settings or EdgeSettings()
        self.targets = {name: _Target(up, self.settings)
                        for name, up in gateway.upstreams.items()
                        if isinstance(up, HttpUpstream)}
        self.clients: set[_ClientConnection] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.scheme = "http"
        self.inline_limits = isinstance(gateway.rate_limiter, MemoryRateLimiter)

    def protocol(self) -> asyncio.Protocol:
        return _ClientConnection(self)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- routing a request --------------------------------------------------------------------

    def handle(self, client: _ClientConnection, req: _Request) -> None:
        started = time.perf_counter()
        rid = routing.request_id_from(req.header(b"x-request-id"))
        try:
            url = httptools.parse_url(req.url)
        except httptools.HttpParserInvalidURLError:
            client.send_problem(Problem(400, "bad-request", "the request target is not valid"),
                                "", rid, keep_alive=False)
            return
        path = unquote_to_bytes(url.path or b"/").decode("latin-1")
        query = url.query or b""
        if req.method == "HEAD" or not path.startswith(routing.API_PREFIX):
            self.spawn(self._by_wsgi(client, req, path, query))
            return
        try:
            upstream, rest = self.gateway.resolve(path)
        except Problem as problem:
            self._refused(client, req, problem, path, rid, started, None)
            return
        target = self.targets.get(upstream.name)
        if target is None:  # an in-process upstream: the WSGI app knows how
            self.spawn(self._by_wsgi(client, req, path, query))
            return
        authorization = req.header(b"authorization")
        address = routing.client_address(client.remote, req.header(b"x-forwarded-for"),
                                         self.gateway.trust_forwarded)
        if self.inline_limits:
            try:
                self.gateway.admit(req.method, path, authorization, address, allow_fetch=False)
            except KeysNeeded:
                self.spawn(self._admit_then_forward(client, req, target, path, rest, query,
                                                    rid, started, authorization, address))
                return
            except Problem as problem:
                self._refused(client, req, problem, path, rid, started, target.name)
                return
            self._forward(client, req, target, path, rest, query, rid, started)
        else:  # a limiter with I/O (Redis): never on the event loop
            self.spawn(self._admit_then_forward(client, req, target, path, rest, query, rid,
                                                started, authorization, address))

    async def _admit_then_forward(self, client: _ClientConnection, req: _Request,
                                  target: _Target, path: str, rest: str, query: bytes, rid: str,
                                  started: float, authorization: str, address: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.executor, lambda: self.gateway.admit(
                req.method, path, authorization, address))
        except Problem as problem:
            self._refused(client, req, problem, path, rid, started, target.name)
            return
        if not client.closing:
            self._forward(client, req, target, path, rest, query, rid, started)

    def _refused(self, client: _ClientConnection, req: _Request, problem: Problem, path: str,
                 rid: str, started: float, upstream: str | None) -> None:
        client.send_problem(problem, path, rid, req.keep_alive)
        record_access(req.method, path, problem.status, started, rid, upstream)

    def _forward(self, client: _ClientConnection, req: _Request, target: _Target, path: str,
                 rest: str, query: bytes, rid: str, started: float) -> None:
        body = b"".join(req.body)
        incoming = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in req.headers]
        headers = forward_headers(incoming, remote=client.remote, scheme=self.scheme,
                                  prefix=routing.API_PREFIX + target.name, request_id=rid,
                                  trust_forwarded=self.gateway.trust_forwarded)
        target_path = encode_path(rest).encode("latin-1")
        if query:
            target_path += b"?" + query
        lines = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (req.method.encode("latin-1"),
                                                      target_path, target.host_header)]
        lines.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers)
        if body or req.method not in ("GET", "DELETE", "OPTIONS"):
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        exchange = _Exchange(self, client, req, target, b"".join(lines), body, rid, path,
                             started)
        client.exchange = exchange
        conn = target.take(time.monotonic())
        if conn is not None:
            exchange.send_on(conn)
        else:
            self.spawn(exchange.connect_and_send())

    # -- the WSGI app for everything else -----------------------------------------------------

    async def _by_wsgi(self, client: _ClientConnection, req: _Request, path: str,
                       query: bytes) -> None:
        environ = self._environ(client, req, path, query)
        loop = asyncio.get_running_loop()
        try:
            status, headers, body = await loop.run_in_executor(
                self.executor, call_wsgi, self.gateway, environ)
        except Exception:
            log.exception("edge: the gateway app failed")
            client.send_problem(Problem(500, "internal-error", "an unexpected error occurred"),
                                path, routing.request_id_from(""), keep_alive=False)
            return
        client.send(status, headers, body, req.keep_alive, head_only=req.method == "HEAD")

    def _environ(self, client: _ClientConnection, req: _Request, path: str,
                 query: bytes) -> dict[str, Any]:
        body = b"".join(req.body)
        host = req.header(b"host") or "localhost"
        name, _, port = host.partition(":")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": req.method, "SCRIPT_NAME": "", "PATH_INFO": path,
            "QUERY_STRING": query.decode("latin-1"), "SERVER_NAME": name,
            "SERVER_PORT": port or "80",
            "SERVER_PROTOCOL": "HTTP/1.1" if req.http11 else "HTTP/1.0",
            "REMOTE_ADDR": client.remote, "wsgi.version": (1, 0), "wsgi.url_scheme": self.scheme,
            "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
            "wsgi.input_terminated": True, "CONTENT_LENGTH": str(len(body)) if body else "",
        }
        for key, value in req.headers:
            name_ = key.decode("latin-1").upper().replace("-", "_")
            text = value.decode("latin-1")
            if name_ in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                if name_ == "CONTENT_TYPE":
                    environ[name_] = text
                continue
            wsgi_key = "HTTP_" + name_
            environ[wsgi_key] = f"{environ[wsgi_key]},{text}" if wsgi_key in environ else text
        return environ

    # -- housekeeping ---------------------------------------------------------------------------

    def sweep(self) -> None:
        now = time.monotonic()
        for client in list(self.clients):
            client.check(now)
        for target in self.targets.values():
            target.sweep(now)

    async def sweeper(self, stop: asyncio.Event, every: float = 1.0) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            self.sweep()

    async def drain(self, timeout: float) -> None:
        """After the listeners closed: let answers in flight finish, then close the rest."""
        deadline = time.monotonic() + timeout
        for client in list(self.clients):
            client.closing = True
            if not client.busy:
                client._close_idle()
        while any(c.busy for c in self.clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for client in list(self.clients):
            client.abort()
        for target in self.targets.values():
            while target.idle:
                target.idle.pop().close()


def call_wsgi(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]
              ) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run a WSGI app to the end: (status, headers, body). On a worker thread."""
    started: list[Any] = []
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        started[:] = [status, headers]
        return written.append

    result = app(environ, start_response)
    try:
        for chunk in result:
            written.append(chunk)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return started[0], started[1], b"".join(written)
