"""The service side of ``gateway.edge``: pools of keep-alive connections to each service, and
the exchange that carries one request there and its answer back to the client.

See ``gateway.edge`` for the limits and timeouts; the rules that matter here:

* an idle pooled connection is used for at most ``pool_idle`` seconds (below the services'
  keep-alive of 5 s); a request that finds its reused connection closed before any byte of the
  answer is sent again on a new connection only when its method is idempotent;
* the answer is streamed as it arrives, one write to the client per read from the service,
  re-framed as chunked when the service gave no length; a service that breaks off after the
  head was sent makes the client connection abort (never a silent truncation);
* the service's silence is timed by the sweeper (``Exchange.check``): 504 before the head,
  an aborted client connection after.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httptools

from gateway.app import AccessTally, record_access
from gateway.cors import CorsAnswer, without_cors_raw
from gateway.headers import clean_response_raw
from gateway.upstream import HttpUpstream
from servicekit.config import env_int
from servicekit.problems import Problem
from servicekit.web import max_body_bytes

log = logging.getLogger("gateway.edge")

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_NO_BODY_STATUS = frozenset({204, 304})
#: seconds a client may read nothing of an answer before its connection is closed
SLOW_READER_LIMIT = 60.0
CONNECTIONS_CAP_SETTING = "GATEWAY_MAX_CONNECTIONS_PER_CLIENT"


class Client(Protocol):
    """What an exchange needs of the client connection it answers."""

    closing: bool

    def write(self, data: bytes) -> None: ...
    def finish(self, keep_alive: bool) -> None: ...
    def send_problem(self, problem: Problem, path: str, rid: str, keep_alive: bool,
                     cors: CorsAnswer | None = None) -> None: ...
    def abort(self) -> None: ...
    def task(self, coro: Any) -> None: ...


def body_budget_bytes() -> int:
    """``GATEWAY_BODY_BUDGET_BYTES``: how many bytes of request bodies one gateway worker holds
    at once (each body is read whole before it is forwarded). Beyond it a request with a body
    is answered 503 + Retry-After before its body is read, so many large uploads at once cost
    a bounded amount of memory instead of ``max_body`` per connection. Default: eight bodies
    of the largest size allowed (168 MiB with the default 21 MiB)."""
    return int(os.environ.get("GATEWAY_BODY_BUDGET_BYTES", 8 * max_body_bytes()))


def client_connections_cap() -> int:
    """``GATEWAY_MAX_CONNECTIONS_PER_CLIENT``: how many connections one worker keeps open from
    one peer address (0, the default: no cap). Set it where clients reach the gateway
    directly: one address cannot then take a worker's ``worker_connections`` for itself. Leave
    it at 0 behind a load balancer or proxy, whose address every client shares."""
    return env_int(CONNECTIONS_CAP_SETTING, 0, minimum=0)


@dataclass
class EdgeSettings:
    """The front end's own limits; the timeouts towards services are ``create_gateway``'s."""

    max_body: int = field(default_factory=max_body_bytes)
    max_head: int = 64 * 1024
    keepalive: float = 15.0
    client_timeout: float = 30.0  # a client's longest silence in the middle of a request
    head_timeout: float = 30.0  # the longest a request's line and headers may take to arrive
    pool_idle: float = 3.0
    pool_max_idle: int = 64
    #: request bodies one worker may hold at once, declared or read (``body_budget_bytes``)
    body_budget: int = field(default_factory=body_budget_bytes)
    #: connections one worker keeps open from one peer address (0: no cap)
    max_client_connections: int = field(default_factory=client_connections_cap)

    def __post_init__(self) -> None:
        # one body of the largest size allowed must always fit, or such a body never passes
        self.body_budget = max(self.body_budget, self.max_body)


@dataclass(slots=True)
class Request:
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    named: dict[bytes, bytes] = field(default_factory=dict)  # lower-case name -> first value
    body: list[bytes] = field(default_factory=list)
    method: str = "GET"
    http11: bool = True
    keep_alive: bool = True
    size: int = 0
    #: the body length its head declared (0: none, or chunked)
    declared: int = 0
    #: what CORS adds to its answer (None: CORS off, or no ``Origin``; ``gateway.cors``)
    cors: CorsAnswer | None = None

    def header(self, name: bytes) -> str:
        """The first value of header ``name`` (lower case), or ""."""
        return self.named.get(name, b"").decode("latin-1")


class ServiceTarget:
    """One service's address and its pool of idle keep-alive connections."""

    def __init__(self, upstream: HttpUpstream, settings: EdgeSettings,
                 tally: AccessTally | None = None) -> None:
        parts = urlsplit(upstream.base_url)
        self.name = upstream.name
        self.host = parts.hostname or "127.0.0.1"
        self.ssl = parts.scheme == "https"
        self.port = parts.port or (443 if self.ssl else 80)
        self.host_header = parts.netloc.encode("latin-1")
        self.prefix = f"/api/{upstream.name}".encode()  # X-Forwarded-Prefix
        self.tally = tally
        self.connect_timeout, self.read_timeout = upstream.timeouts
        self.settings = settings
        self.idle: deque[ServiceConnection] = deque()

    def take(self, now: float) -> ServiceConnection | None:
        while self.idle:
            conn = self.idle.pop()
            if now - conn.last < self.settings.pool_idle and not conn.closed:
                return conn
            conn.close()
        return None

    def give_back(self, conn: ServiceConnection) -> None:
        if conn.closed or len(self.idle) >= self.settings.pool_max_idle:
            conn.close()
        else:
            self.idle.append(conn)

    def sweep(self, now: float) -> None:
        while self.idle and now - self.idle[0].last >= self.settings.pool_idle:
            self.idle.popleft().close()

    async def connect(self) -> ServiceConnection:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: ServiceConnection(self), self.host, self.port,
                                   ssl=self.ssl or None),
            self.connect_timeout)
        return conn


class ServiceConnection(asyncio.Protocol):
    """A keep-alive connection to a service; parses its answers for the current exchange."""

    __slots__ = ("target", "transport", "parser", "exchange", "last", "used", "closed",
                 "_reason", "_headers", "_interim")

    def __init__(self, target: ServiceTarget) -> None:
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
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

    def send(self, exchange: Exchange, data: bytes) -> None:
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


class Exchange:
    """A request on its way to a service and its answer on the way back."""

    __slots__ = ("client", "req", "target", "data", "body", "rid", "path", "started", "service",
                 "answered", "head_sent", "chunked", "until_close", "out", "status", "done",
                 "keep_alive", "paused_at")

    def __init__(self, client: Client, req: Request,
                 target: ServiceTarget, head: bytes, body: bytes, rid: str, path: str,
                 started: float) -> None:
        self.client = client
        self.req = req
        self.target = target
        self.data = head + body if len(body) < 65536 else head
        self.body = b"" if len(body) < 65536 else body
        self.rid = rid
        self.path = path
        self.started = started
        self.service: ServiceConnection | None = None
        self.answered = False  # a byte of the answer arrived
        self.head_sent = False
        self.chunked = False
        self.until_close = False  # the service ends its body by closing the connection
        self.out: list[bytes] = []  # answer bytes not yet written to the client
        self.status = 0
        self.done = False
        self.keep_alive = req.keep_alive
        self.paused_at: float | None = None  # the client stopped reading at this time

    def send_on(self, conn: ServiceConnection) -> None:
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
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason or b"-")]
        has_length = False
        headers = clean_response_raw(raw)
        cors = self.req.cors
        if cors is not None:  # the gateway's CORS headers replace any of the service's
            headers = without_cors_raw(headers)
            lines.append(cors.raw)
        for key, value in headers:
            lower = key.lower()
            if lower == b"x-request-id":
                continue
            if lower == b"content-length":
                has_length = True
            lines.append(b"%s: %s\r\n" % (key, value))
        lines.append(b"X-Request-ID: %s\r\n" % self.rid.encode())
        bodiless = status in _NO_BODY_STATUS
        self.until_close = not (bodiless or has_length or any(
            k.lower() == b"transfer-encoding" for k, _ in raw))
        if not has_length and not bodiless:
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

    def answer_end(self, conn: ServiceConnection, reusable: bool) -> None:
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
                      self.target.name, self.target.tally)

    # failures
    def service_lost(self, conn: ServiceConnection) -> None:
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
        if self.paused_at is not None:
            # the service is waiting for the client, not the other way round: give a slow
            # reader its time, but not for ever
            if now - self.paused_at > SLOW_READER_LIMIT:
                log.warning("a client read nothing for %s s; closing", SLOW_READER_LIMIT)
                if conn is not None:
                    conn.exchange = None
                    conn.close()
                self.abort()
            return
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
        self.client.send_problem(problem, self.path, self.rid, self.keep_alive, self.req.cors)
        record_access(self.req.method, self.path, self.status, self.started, self.rid,
                      self.target.name, self.target.tally)

    def abort(self) -> None:
        self.done = True
        self.client.abort()
        record_access(self.req.method, self.path, self.status, self.started, self.rid,
                      self.target.name, self.target.tally)

    def client_lost(self) -> None:
        if not self.done and self.service is not None:
            self.service.exchange = None
            self.service.close()
        self.done = True

    def pause(self) -> None:
        self.paused_at = time.monotonic()
        if self.service is not None and self.service.transport is not None:
            self.service.transport.pause_reading()

    def resume(self) -> None:
        self.paused_at = None
        if self.service is not None and self.service.transport is not None:
            self.service.last = time.monotonic()
            self.service.transport.resume_reading()
