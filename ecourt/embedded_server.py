"""The embedded suite's HTTP server: bound before anything starts, drained on stop.

``ecourt run`` binds its port before it builds the suite (``listen``), so a port in use is one
clear error and nothing has started; on TERM or Ctrl-C the server stops accepting and waits
for the requests it is handling (``InFlight``) before the workers stop, because werkzeug's
request threads are daemon threads that would otherwise die under a request, maybe after its
commit. Kept apart from ``ecourt.embedded``, which assembles the suite itself.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from werkzeug.serving import BaseWSGIServer, ThreadedWSGIServer, WSGIRequestHandler

from servicekit.config import ConfigError
from servicekit.problems import Problem, problem_response, slug_for


def listen(host: str, port: int) -> BaseWSGIServer:
    """The suite's HTTP server, bound and listening but not yet serving (connections wait in
    the backlog until ``Suite.serve_on``). A port that cannot be bound is a ``ConfigError``
    naming it: werkzeug's own server prints two lines and calls ``sys.exit(1)`` instead."""
    return _Server(host, port, _not_serving, handler=_ProblemHandler)


class _Server(ThreadedWSGIServer):
    """werkzeug's threaded server, whose failure to bind is a ``ConfigError``."""

    def server_bind(self) -> None:
        try:
            super().server_bind()
        except OSError as exc:  # raised as an OSError, werkzeug would print it and exit
            raise ConfigError(f"cannot listen on {self.host}:{self.port} ({exc.strerror}): "
                              "stop what uses the port or choose another (--port or "
                              "ECOURT_PORT)") from None


#: what the suite says of a request that is not HTTP it can read, by status (the distributed
#: edge's words, ``gateway.edge``); any other status gets its reason phrase
_NOT_HTTP = {
    400: ("bad-request", "the request is not valid HTTP/1.1"),
    414: ("uri-too-long", "the request target is too long"),
    431: ("headers-too-large", "the request line and headers are too large"),
    505: ("http-version-not-supported", "only HTTP/1.0 and HTTP/1.1 are served"),
}


#: a terminal colour (SGR) escape, as werkzeug styles its access lines
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _ProblemHandler(WSGIRequestHandler):
    """werkzeug's request handler, whose answer to what is not HTTP at all (a request line it
    cannot read, a version it does not serve, a header line too long) is problem+json like
    every other error of the suite, not ``http.server``'s HTML page; the distributed tier's
    edge answers the same. The request's own bytes are not echoed back. Its log lines carry
    no terminal colours."""

    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002 - werkzeug's name
        """werkzeug's log lines without the terminal colours it gives an access line by its
        status: the suite's logs are JSON lines for machines, where an ANSI escape is noise."""
        super().log(type, message, *(_ANSI.sub("", a) if isinstance(a, str) else a
                                     for a in args))

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        slug, detail = _NOT_HTTP.get(code, (slug_for(code), None))
        self.log_error("code %d, message %s", code, message)
        answer = problem_response(Problem(code, slug, detail, title=HTTPStatus(code).phrase))
        body = answer.get_data()
        if self.request_version == "HTTP/0.9":  # no request line read: answered as nginx does,
            self.request_version = "HTTP/1.1"  # with a status line and headers
        self.send_response(code)
        self.send_header("Connection", "close")
        if code >= 200 and code not in (204, 205, 304):
            self.send_header("Content-Type", answer.content_type or "")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 205, 304):
            self.wfile.write(body)


def _not_serving(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The server's application until ``serve_on`` gives it the gateway (never called: no
    request is handled before ``serve_forever``)."""
    raise RuntimeError("the suite is not serving yet")


class InFlight:
    """WSGI middleware counting the requests being handled (until their answer is sent)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.count = 0
        self._done = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._done:
            self.count += 1
        try:
            body = self.app(environ, start_response)
        except BaseException:
            self._finished()
            raise
        return _Closing(body, self._finished)

    def _finished(self) -> None:
        with self._done:
            self.count -= 1
            self._done.notify_all()

    def drained(self, timeout: float) -> bool:
        with self._done:
            return self._done.wait_for(lambda: self.count <= 0, timeout)


class _Closing:
    """An answer's body that reports when it is done with: sent, or abandoned.

    The server is to call ``close`` at the end of every request (PEP 3333), but werkzeug's
    does it after reading whatever the client still sends, to discard it, and a client that
    resets the connection then (a closed browser tab, a probe giving up) raises the reset out
    of that read: the server takes it for a dropped connection and never calls ``close``. So
    the body is closed when its iteration ends too — the server asks for the next piece only
    once the last is written, so the answer is out by then — or when the iteration is
    abandoned (a failed write: the generator is closed as the server lets go of it); the
    server's own ``close`` after that changes nothing. Without it the request stayed counted
    for ever, every later stop waited out the whole drain, and the body's own ``close`` (the
    gateway's access record) never ran."""

    def __init__(self, body: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self.body = body
        self.on_close = on_close
        self._closed = False
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.body
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.on_close()


def term_as_interrupt() -> None:
    """A process manager's TERM stops the suite as Ctrl-C does: werkzeug ends serve_forever on
    KeyboardInterrupt and the workers are stopped after it; during start-up ``run`` stops
    them. (Only the main thread may set a handler: elsewhere TERM keeps its default.)"""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
