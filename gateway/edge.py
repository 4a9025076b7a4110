"""The gateway's front end in the distributed tier: an asyncio HTTP/1.1 reverse proxy.

Why a second front end: a WSGI worker pays for a thread hand-off, an environ, a ``requests``
call and werkzeug's wrappers around every forwarded request, and on two shared cores that cost
as much CPU as the service's own route (``bench/``: 0.21–0.45 × direct). Here one event loop per
gunicorn worker (``gateway.worker.EdgeWorker``) parses with httptools (llhttp, in C), keeps a
pool of keep-alive connections to each service and moves bytes. Only the decisions are Python,
and they are the WSGI app's own, so the two front ends cannot drift apart:

* ``Gateway.resolve`` and ``Gateway.admit`` decide the route, the token and the rate limit, and
  ``problem_response`` shapes every refusal;
* ``gateway.headers`` holds the header rules of both: among them, the ``X-Forwarded-For`` a
  service receives ends with the client address the limits counted (``client_address``), all
  of a request's ``X-Forwarded-For`` lines read in order as one list;
* whatever is not a plain forward to an HTTP upstream (the gateway's own pages, ``HEAD``, an
  in-process upstream) is answered by the WSGI app itself, run on a thread pool.

Limits and decisions:

* a request body is read whole before it is forwarded (as nginx buffers), up to ``max_body``
  bytes (413 beyond; ``ECOURT_MAX_BODY_BYTES``, the services' own limit); request line and
  headers up to ``max_head`` bytes (431 beyond);
* the bodies one worker holds at once, read or declared, stay within ``body_budget``
  (``GATEWAY_BODY_BUDGET_BYTES``): a request whose body would go beyond it is answered 503 +
  ``Retry-After`` before its body is read (a chunked one, as soon as it grows beyond it), so
  many clients uploading at once cannot make a worker hold ``max_body`` per connection
  (bodies under ``BUDGET_CHECK_FROM`` are not checked: with at most ``worker_connections``
  per worker, ``gateway.acceptor``, they hold at most that many times it);
* a request refused whatever its body holds (no such service, no valid token for a protected
  route: ``Gateway.refusal_before_body``) is answered once its head is read, and its body is
  never buffered; the connection then lingers, discarding what the client still sends, so the
  client reads the answer instead of a reset (``LINGER_QUIET``, ``LINGER_MAX``);
* framing a service could read differently is refused and never forwarded: more than one
  ``Host`` or none in HTTP/1.1, a transfer coding other than ``chunked``, any in HTTP/1.0
  (httptools refuses ``Content-Length`` with ``Transfer-Encoding`` and two lengths);
* a client that half-closes (its FIN once its requests are sent) gets the answers to the
  requests it sent whole, then the close (``eof_received``); bytes that are no request,
  pipelined after a request being answered, are refused once the answers before them are
  sent (``_refuse``), never by cutting those answers off;
* a response body is streamed as it arrives, with back-pressure: when the client reads slowly
  the upstream connection stops being read;
* towards a service, the gateway's ``connect_timeout`` and ``timeout`` apply as in
  ``HttpUpstream`` (504), and pooled connections are handled as ``gateway.edge_service`` says;
* a client connection idle for ``keepalive`` seconds, or silent for ``client_timeout`` seconds
  in the middle of a request, is closed; a request whose line and headers have not all
  arrived ``head_timeout`` seconds after they began is answered 408 (as nginx's
  ``client_header_timeout``: a client trickling its head a byte at a time is never silent
  long enough for the other limits, and would hold its connection for ever). Timeouts are
  checked once a second by a sweeper, so the hot path only stamps times.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Executor
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools

from gateway import routing
from gateway.app import AccessTally, Gateway, record_access
from gateway.cors import CorsAnswer
from gateway.edge_service import EdgeSettings, Exchange, Request, ServiceTarget
from gateway.headers import (
    clean_response_headers,
    forward_raw,
    received_forwarded_for,
    received_lines,
)
from gateway.upstream import HttpUpstream, encode_path
from servicekit.logs import Throttled
from servicekit.metrics import GATEWAY_BODIES_HELD, GATEWAY_CONNECTIONS
from servicekit.problems import Problem, problem_response
from servicekit.tokens import KeysNeeded

log = logging.getLogger(__name__)
#: a client at its connection cap may try again and again: a line at most every 10 s
_CAP_WARNING = Throttled(log)

__all__ = ["EdgeServer", "EdgeSettings", "call_wsgi"]

#: a path that ``encode_path`` would leave as it is (the common case: no encoding work)
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._~!$&'()*+,;=:@-]*")


#: a refused connection's unread bytes are discarded until the client is quiet this long, or
#: at most LINGER_MAX seconds (or one body's limit), then it is closed (as nginx's lingering close)
LINGER_QUIET = 1.0
LINGER_MAX = 10.0

#: a body at least this large is checked against the worker's budget for bodies held (when
#: its head declares it, or as a chunked body grows past each multiple); smaller ones are not
#: worth the count, which walks every connection of the worker
BUDGET_CHECK_FROM = 64 * 1024
#: what a client refused for the budget is told to wait, in seconds
BUDGET_RETRY_AFTER = 2

#: headers a request may carry once (RFC 9112 §3.2 for Host; httptools checks Content-Length)
_ONCE = frozenset({b"host", b"transfer-encoding"})


def _bad_framing(detail: str) -> Problem:
    return Problem(400, "bad-request", detail)


def _path_and_query(req: Request) -> tuple[str, bytes] | None:
    """The request target's decoded path and raw query, or None when it is not a valid URL."""
    try:
        url = httptools.parse_url(req.url)
    except httptools.HttpParserInvalidURLError:
        return None
    raw_path = url.path or b"/"
    path = (unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path).decode("latin-1")
    return path, url.query or b""


def _check_transfer_coding(req: Request) -> None:
    """Only ``chunked`` is accepted, and only from HTTP/1.1 (RFC 9112 §6.1): the gateway
    decodes the chunks and forwards a plain body, so another coding stacked before it (gzip,
    say) would reach the service undeclared; an HTTP/1.0 message with a transfer coding has
    faulty framing."""
    if not req.http11:
        raise _Refuse(_bad_framing("HTTP/1.0 has no transfer codings"))
    if req.named[b"transfer-encoding"].strip().lower() != b"chunked":
        raise _Refuse(Problem(501, "not-implemented",
                              "the only transfer coding accepted is chunked"))


class _Refuse(Exception):  # noqa: N818 - a signal out of a parser callback
    """Stop parsing: the request is refused with ``problem`` and the connection closed."""

    def __init__(self, problem: Problem, method: str = "-", path: str = "") -> None:
        self.problem = problem
        self.method = method
        self.path = path


# -- the client side --------------------------------------------------------------------------


class _ClientConnection(asyncio.Protocol):
    """One client's connection: parses its requests and answers them one after another."""

    __slots__ = ("edge", "settings", "parser", "transport", "remote", "remote_raw", "current",
                 "queue", "busy", "answering", "exchange", "last", "head_size", "head_started",
                 "in_head", "closing", "linger", "discarded", "counted", "sent_all",
                 "refused_later", "__weakref__")

    def __init__(self, edge: EdgeServer) -> None:
        self.edge = edge
        self.settings = edge.settings
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.remote = ""
        self.remote_raw = b""
        self.current: Request | None = None
        self.queue: deque[Request] = deque()
        self.busy = False
        #: the request being answered: its body is held until the answer is written
        self.answering: Request | None = None
        self.exchange: Exchange | None = None
        self.last = time.monotonic()
        self.head_size = 0
        #: when the current request's head began to arrive, and whether it still is arriving
        self.head_started = 0.0
        self.in_head = False
        self.closing = False
        #: since when a refused connection's unread bytes are being discarded (0: not)
        self.linger = 0.0
        self.discarded = 0
        #: counted in ``EdgeServer.per_client`` (only when a cap is set)
        self.counted = False
        #: the client has half-closed (its FIN): it sends nothing more, the answers still go
        self.sent_all = False
        #: bytes that are no request, read while an earlier request's answer was under way:
        #: (problem, method, path), answered once the answers before it are sent (``_refuse``)
        self.refused_later: tuple[Problem, str, str] | None = None

    # asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if peer else ""
        self.remote_raw = self.remote.encode()
        self.edge.clients.add(self)
        if self.edge.on_clients is not None:
            self.edge.on_clients()
        cap = self.settings.max_client_connections
        if cap:
            held = self.edge.per_client.get(self.remote, 0)
            if held >= cap:
                self._over_cap(cap)
                return
            self.edge.per_client[self.remote] = held + 1
            self.counted = True

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        if self.linger:
            self._discard(len(data))
            return
        if self.closing or self.refused_later:  # answered and closed (``finish``, ``_over_cap``),
            return  # or refused once the answers before it are sent: nothing more is read
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__ if isinstance(exc.__context__, _Refuse) else None
            if refusal is None:
                log.exception("edge: error while reading a request")
                self._refuse(Problem(500, "internal-error", "an unexpected error occurred"))
            else:
                self._refuse(refusal.problem, refusal.method, refusal.path)
        except httptools.HttpParserUpgrade:
            self._no_more_requests()
        except httptools.HttpParserError:
            self._refuse(Problem(400, "bad-request", "the request is not valid HTTP/1.1"))

    def _no_more_requests(self) -> None:
        """The parser stops after a request that asks to switch protocols (``curl --http2``'s
        ``Upgrade: h2c``, a WebSocket handshake, ``CONNECT``): what follows its head would be
        the other protocol's bytes. That request is already queued or answered without the
        switch and without keep-alive, so its answer closes the connection; nothing more is
        read. (It used to be refused here with the connection aborted: the answer under
        way, the service's included, never reached the client.)"""
        if self.transport is not None and not self.closing:
            self.transport.pause_reading()
            if not self.busy and not self.queue:
                self.closing = True
                self.transport.close()

    def eof_received(self) -> bool:
        """The client has shut down its sending side (``shutdown(SHUT_WR)``: ``nc -N``, some
        HTTP/1.0 clients and health checkers do, once the request is sent): it sends nothing
        more but still reads. The requests it sent whole are answered, and the connection
        is closed after the last answer, as nginx and HAProxy do. (asyncio's default closed
        the transport here: the request being forwarded, or waiting in the queue, was never
        answered.) A request cut short by the EOF can never be answered: it is dropped, and
        with nothing else to answer the connection is closed now, as is one lingering after
        a refusal."""
        self.sent_all = True
        if self.linger or self.closing:
            return False
        return self.busy or bool(self.queue)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.edge.clients.discard(self)
        if self.counted:
            self.counted = False
            left = self.edge.per_client.pop(self.remote, 1) - 1
            if left:
                self.edge.per_client[self.remote] = left
        if self.edge.on_clients is not None:
            self.edge.on_clients()
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
        self.current = Request()
        self.head_size = 0
        self.head_started = self.last  # the arrival of the data it begins in
        self.in_head = True

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.url += url
        self.head_size += len(url)
        if self.head_size > self.settings.max_head:
            self._head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers.append((name, value))
        key = name.lower()
        if self.current.named.setdefault(key, value) is not value and key in _ONCE:
            raise _Refuse(_bad_framing(f"more than one {name.decode('latin-1')} header"))
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.settings.max_head:
            self._head_too_large()

    @staticmethod
    def _head_too_large() -> None:
        raise _Refuse(Problem(431, "headers-too-large",
                              "the request line and headers are too large"))

    def on_headers_complete(self) -> None:
        req = self.current
        assert req is not None
        self.in_head = False
        req.method = self.parser.get_method().decode("latin-1")
        req.http11 = self.parser.get_http_version() == "1.1"
        # a request asking to switch protocols (``Upgrade``, ``CONNECT``) is answered as plain
        # HTTP/1.1 (RFC 9110 §7.8), as the WSGI app answers it, and is the connection's last
        req.keep_alive = self.parser.should_keep_alive() and not self.parser.should_upgrade()
        named = req.named
        cors = self.edge.cors
        if cors is not None and b"origin" in named:
            # what CORS adds to every answer, the refusals below included; every Origin line,
            # as the WSGI app reads them (two are no origin a portal has)
            origin = received_lines(req.headers, b"origin").decode("latin-1")
            req.cors = cors.answer_for(req.method, origin,
                                       b"access-control-request-method" in named)
        if req.http11 and b"host" not in named:
            raise _Refuse(_bad_framing("an HTTP/1.1 request must name its Host"))
        if b"transfer-encoding" in named:
            _check_transfer_coding(req)
        length = named.get(b"content-length")
        if length is not None and length.isdigit():
            req.declared = int(length)
            if req.declared > self.settings.max_body:
                raise _Refuse(self._too_large())
        if ((b"transfer-encoding" in named or (length is not None and length.strip(b"0")))
                and not self.busy and not self.queue):
            self._refuse_before_body(req)
        if req.declared >= BUDGET_CHECK_FROM:
            self._check_budget(req)
        expect = named.get(b"expect")
        if (expect is not None and expect.lower() == b"100-continue" and not self.busy
                and self.transport is not None):
            # curl and others wait for this before sending a body; the services never see it
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _refuse_before_body(self, req: Request) -> None:
        """A request that will be refused whatever its body (``Gateway.refusal_before_body``)
        is answered now and the connection closed, its body never read. Only on an idle
        connection: an answer still being written must not be cut short."""
        target = _path_and_query(req)
        if target is None:
            return  # not a valid target: answered once the request is read, as before
        path, _ = target
        if (req.method == "HEAD" or not path.startswith(routing.API_PREFIX)
                or (req.cors is not None and req.cors.preflight)):
            return  # a preflight is never refused for a token (``Gateway.preflight``)
        edge = self.edge
        problem = edge.gateway.refusal_before_body(
            req.method, path, req.header(b"authorization"), edge.client_address(self, req),
            count=edge.inline_limits)
        if problem is not None:
            raise _Refuse(problem, req.method, path)

    def on_body(self, body: bytes) -> None:
        req = self.current
        assert req is not None
        before, req.size = req.size, req.size + len(body)
        if req.size > self.settings.max_body:
            raise _Refuse(self._too_large())
        req.body.append(body)
        if not req.declared and before // BUDGET_CHECK_FROM != req.size // BUDGET_CHECK_FROM:
            self._check_budget(req)  # a chunked body: its size is known only as it comes

    def on_message_complete(self) -> None:
        req, self.current = self.current, None
        assert req is not None
        self.queue.append(req)
        if self.busy and self.transport is not None:
            self.transport.pause_reading()  # one answer at a time; hold further requests
        self._next()

    def held_bodies(self) -> int:
        """Bytes of request bodies this connection holds: the one being read (as much as its
        head declared, reserved before it arrives), those waiting, the one being answered.
        Counted from what the connection holds now, so no path can leak a reservation."""
        held = 0
        if self.current is not None:
            held = max(self.current.size, self.current.declared)
        for req in self.queue:
            held += req.size
        if self.answering is not None:
            held += self.answering.size
        return held

    def _check_budget(self, req: Request) -> None:
        if self.edge.bodies_held() <= self.settings.body_budget:
            return
        self.edge.budget_refusals += 1
        target = _path_and_query(req)
        raise _Refuse(Problem(503, "gateway-busy",
                              "the gateway is holding as many request bodies as it may; "
                              "send this request again shortly",
                              headers={"Retry-After": str(BUDGET_RETRY_AFTER)}),
                      req.method, target[0] if target else "")

    def _too_large(self) -> Problem:
        return Problem(413, "payload-too-large",
                       f"the request body is larger than {self.settings.max_body} bytes")

    # answering
    def _next(self) -> None:
        if self.busy or self.closing or not self.queue:
            return
        self.busy = True
        req = self.answering = self.queue.popleft()
        try:
            self.edge.handle(self, req)
        except Exception:
            log.exception("edge: error while handling a request")
            self.busy = False
            self._refuse(Problem(500, "internal-error", "an unexpected error occurred"))

    def finish(self, keep_alive: bool) -> None:
        """The answer to the current request is written."""
        self.exchange = None
        self.answering = None
        self.busy = False
        self.last = time.monotonic()
        if self.sent_all and not self.queue:
            keep_alive = False  # nothing more can come: closed after this answer
        if self.refused_later is not None and not self.queue:
            problem, method, path = self.refused_later
            self.refused_later = None
            if keep_alive and not self.closing:  # after a last request, what follows is moot
                self._refuse(problem, method, path)
                return
        if not keep_alive or self.closing:
            self.closing = True
            if self.transport is not None and not self.linger:
                self.transport.close()
            elif self.transport is not None and self.transport.can_write_eof():
                self.transport.write_eof()  # the answer is all; what the client sends is not read
            return
        if self.transport is not None and not self.queue:
            self.transport.resume_reading()
        self._next()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_problem(self, problem: Problem, path: str, rid: str, keep_alive: bool,
                     cors: CorsAnswer | None = None) -> None:
        resp = problem_response(problem, routing.display_path(path), rid)
        headers = [*resp.headers.to_wsgi_list(), (routing.REQUEST_ID_HEADER, rid)]
        self.send(resp.status, headers, resp.get_data(), keep_alive, cors=cors)

    def send(self, status: str, headers: Iterable[tuple[str, str]], body: bytes,
             keep_alive: bool, head_only: bool = False, cors: CorsAnswer | None = None) -> None:
        """Write a whole answer (problems, preflights and the WSGI app's pages, which carry
        their CORS headers already) and finish. ``cors``: the CORS headers to add."""
        lines = [f"HTTP/1.1 {status}\r\n".encode("latin-1")]
        if cors is not None:
            lines.append(cors.raw)
        length = None
        for key, value in clean_response_headers(headers):
            if key.lower() == "content-length":
                length = value
                continue
            lines.append(f"{key}: {value}\r\n".encode("latin-1"))
        if not head_only:
            length = str(len(body))
        if length is not None and status[:3] not in ("204", "304"):  # RFC 9110 §8.6
            lines.append(b"Content-Length: %s\r\n" % length.encode("latin-1"))
        if not keep_alive:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        if not head_only:
            lines.append(body)
        self.write(b"".join(lines))
        self.finish(keep_alive)

    def _refuse(self, problem: Problem, method: str = "-", path: str = "") -> None:
        """Answer a request that could not be (or will not be) read, then close the
        connection."""
        if self.busy and not self.linger and self.refused_later is None:
            # bytes after a whole request that is being answered (pipelined): its answer, and
            # those of requests queued before the fault, go first, then this refusal and the
            # close, as nginx answers; aborting here lost the answers under way
            self.refused_later = (problem, method, path)
            if self.transport is not None:
                self.transport.pause_reading()
            return
        rid = routing.request_id_from("")
        if self.exchange is None and not self.busy:
            self.busy = True
            # a lingering close: the client may still be sending the body this answer refuses,
            # and closing with unread bytes would reset the connection before it reads why
            self.linger = time.monotonic()
            req = self.current if self.current is not None else self.answering
            self.send_problem(problem, path, rid, keep_alive=False,
                              cors=req.cors if req is not None else None)
        else:
            self.abort()
        record_access(method, path, problem.status, time.perf_counter(), rid, None,
                      self.edge.tally)

    def _over_cap(self, cap: int) -> None:
        """A connection beyond the peer's cap: told 429 at once and closed, without waiting for
        (or lingering over) a request — holding it open is what the cap prevents."""
        self.busy = True
        rid = routing.request_id_from("")
        self.send_problem(Problem(429, "too-many-connections",
                                  f"this address already holds {cap} connections to the "
                                  "gateway: send requests on those, or close some",
                                  headers={"Retry-After": "1"}), "", rid, keep_alive=False)
        _CAP_WARNING.warning("edge: a client address reached its cap of %d connections", cap)

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def task(self, coro: Any) -> None:
        self.edge.spawn(coro)

    def _discard(self, size: int) -> None:
        self.discarded += size
        if self.discarded > self.settings.max_body and self.transport is not None:
            self.transport.close()

    def check(self, now: float) -> None:
        """Called by the sweeper: close what has been idle or silent too long."""
        if self.linger:
            if ((now - self.last > LINGER_QUIET or now - self.linger > LINGER_MAX)
                    and self.transport is not None):
                self.transport.close()
            return
        if self.exchange is not None:
            self.exchange.check(now)
        elif not self.busy:
            if self.in_head and now - self.head_started > self.settings.head_timeout:
                self._refuse(Problem(408, "request-timeout",
                                     "the request line and headers took too long to arrive"))
                return
            limit = self.settings.client_timeout if self.current else self.settings.keepalive
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
        self.tally = AccessTally()
        self.targets = {name: ServiceTarget(up, self.settings, self.tally)
                        for name, up in gateway.upstreams.items()
                        if isinstance(up, HttpUpstream)}
        self.clients: set[_ClientConnection] = set()
        #: open connections per peer address, kept only with a cap (``max_client_connections``)
        self.per_client: dict[str, int] = {}
        #: called as clients come and go (``gateway.acceptor`` tells the sibling workers)
        self.on_clients: Callable[[], None] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.scheme = "http"
        # a limiter that never waits on I/O decides on the loop; any other on a thread
        self.inline_limits = bool(getattr(gateway.rate_limiter, "inline", False))
        #: the gateway's CORS policy; None (off) costs each request one attribute lookup
        self.cors = gateway.cors
        #: requests refused for the body budget since the sweeper last reported them
        self.budget_refusals = 0

    def protocol(self) -> asyncio.Protocol:
        return _ClientConnection(self)

    def held(self) -> int:
        return len(self.clients)

    def bodies_held(self) -> int:
        """Bytes of request bodies this worker's connections hold (``body_budget``)."""
        return sum(client.held_bodies() for client in self.clients)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- routing a request --------------------------------------------------------------------

    def handle(self, client: _ClientConnection, req: Request) -> None:
        started = time.perf_counter()
        rid = routing.request_id_from(req.header(b"x-request-id"))
        target_ = _path_and_query(req)
        if target_ is None:
            client.send_problem(Problem(400, "bad-request", "the request target is not valid"),
                                "", rid, keep_alive=False, cors=req.cors)
            return
        path, query = target_
        cors = req.cors
        if cors is not None and cors.preflight:
            self._preflight(client, req, cors, path, rid, started)
            return
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
        address = self.client_address(client, req)
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

    def client_address(self, client: _ClientConnection, req: Request) -> str:
        """Whom the rate limit counts an anonymous request against: ``routing.client_address``
        over every ``X-Forwarded-For`` line, in order (a proxy that adds a line of its own must
        not leave the client's line to decide). ``forward_raw`` ends the forwarded chain with
        the same address."""
        if self.gateway.trust_forwarded and b"x-forwarded-for" in req.named:
            received = received_forwarded_for(req.headers).decode("latin-1")
            return routing.client_address(client.remote, received, True)
        return routing.client_address(client.remote, "", False)

    def _admit_then_forward(self, client: _ClientConnection, req: Request,
                            target: ServiceTarget, path: str, rest: str, query: bytes,
                            rid: str, started: float, authorization: str,
                            address: str) -> Coroutine[Any, Any, None]:
        return self._admit_off_loop(
            client, req, path, rid, started, target.name,
            lambda: self.gateway.admit(req.method, path, authorization, address),
            lambda: self._forward(client, req, target, path, rest, query, rid, started))

    async def _admit_off_loop(self, client: _ClientConnection, req: Request, path: str,
                              rid: str, started: float, upstream: str | None,
                              admit: Callable[[], Any], admitted: Callable[[], None]) -> None:
        """``admit`` on a worker thread (it may wait on I/O: a JWKS to fetch, Redis), then
        ``admitted`` back on the loop; a refusal is answered as ``_refused``."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.executor, admit)
        except Problem as problem:
            self._refused(client, req, problem, path, rid, started, upstream)
            return
        except Exception:
            log.exception("edge: admitting a request failed")
            self._refused(client, req, Problem(500, "internal-error",
                                               "an unexpected error occurred"),
                          path, rid, started, upstream)
            return
        if not client.closing:
            admitted()

    def _preflight(self, client: _ClientConnection, req: Request, cors: CorsAnswer, path: str,
                   rid: str, started: float) -> None:
        """A browser's preflight, answered here whatever the path (``Gateway.preflight``)."""
        address = self.client_address(client, req)

        def admitted() -> None:
            client.send("204 No Content", [(routing.REQUEST_ID_HEADER, rid)], b"",
                        req.keep_alive, cors=cors)
            record_access(req.method, path, 204, started, rid, None, self.tally)

        if not self.inline_limits:  # a limiter with I/O (Redis): never on the event loop
            self.spawn(self._admit_off_loop(client, req, path, rid, started, None,
                                            lambda: self.gateway.preflight(cors, address),
                                            admitted))
            return
        try:
            self.gateway.preflight(cors, address)
        except Problem as problem:
            self._refused(client, req, problem, path, rid, started, None)
            return
        admitted()

    def _refused(self, client: _ClientConnection, req: Request, problem: Problem, path: str,
                 rid: str, started: float, upstream: str | None) -> None:
        client.send_problem(problem, path, rid, req.keep_alive, req.cors)
        record_access(req.method, path, problem.status, started, rid, upstream, self.tally)

    def _forward(self, client: _ClientConnection, req: Request, target: ServiceTarget, path: str,
                 rest: str, query: bytes, rid: str, started: float) -> None:
        body = b"".join(req.body)
        if len(req.body) > 1:
            req.body = [body]  # let the pieces go: a body is held once, as the budget counts it
        headers = forward_raw(req.headers, remote=client.remote_raw, scheme=b"http",
                              prefix=target.prefix, request_id=rid.encode(),
                              trust_forwarded=self.gateway.trust_forwarded, named=req.named)
        target_path = (rest.encode() if _PLAIN_PATH.fullmatch(rest)
                       else encode_path(rest).encode("latin-1"))
        if query:
            target_path += b"?" + query
        lines = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (req.method.encode("latin-1"),
                                                      target_path, target.host_header)]
        lines.extend(b"%s: %s\r\n" % pair for pair in headers)
        if body or req.method not in ("GET", "DELETE", "OPTIONS"):
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        exchange = Exchange(client, req, target, b"".join(lines), body, rid, path,
                             started)
        client.exchange = exchange
        conn = target.take(time.monotonic())
        if conn is not None:
            exchange.send_on(conn)
        else:
            self.spawn(exchange.connect_and_send())

    # -- the WSGI app for everything else -----------------------------------------------------

    async def _by_wsgi(self, client: _ClientConnection, req: Request, path: str,
                       query: bytes) -> None:
        environ = self._environ(client, req, path, query)
        loop = asyncio.get_running_loop()
        try:
            status, headers, body = await loop.run_in_executor(
                self.executor, call_wsgi, self.gateway, environ)
        except Exception:
            log.exception("edge: the gateway app failed")
            client.send_problem(Problem(500, "internal-error", "an unexpected error occurred"),
                                path, routing.request_id_from(""), keep_alive=False,
                                cors=req.cors)
            return
        client.send(status, headers, body, req.keep_alive, head_only=req.method == "HEAD")

    def _environ(self, client: _ClientConnection, req: Request, path: str,
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
        self.tally.flush()
        GATEWAY_CONNECTIONS.set(len(self.clients))
        GATEWAY_BODIES_HELD.set(self.bodies_held())
        if self.budget_refusals:
            log.warning("edge: %d request(s) refused with 503: the bodies held reached the "
                        "budget of %d bytes (GATEWAY_BODY_BUDGET_BYTES)",
                        self.budget_refusals, self.settings.body_budget)
            self.budget_refusals = 0
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
        self.tally.flush()


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
