"""The embedded suite's HTTP server: bound before anything starts, drained on stop.

``ecourt run`` binds its port before it builds the suite (``listen``), so a port in use is one
clear error and nothing has started; on TERM or Ctrl-C the server stops accepting and waits
for the requests it is handling (``InFlight``) before the workers stop, because werkzeug's
request threads are daemon threads that would otherwise die under a request, maybe after its
commit. Kept apart from ``ecourt.embedded``, which assembles the suite itself.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from werkzeug.serving import BaseWSGIServer, ThreadedWSGIServer

from servicekit.config import ConfigError


def listen(host: str, port: int) -> BaseWSGIServer:
    """The suite's HTTP server, bound and listening but not yet serving (connections wait in
    the backlog until ``Suite.serve_on``). A port that cannot be bound is a ``ConfigError``
    naming it: werkzeug's own server prints two lines and calls ``sys.exit(1)`` instead."""
    return _Server(host, port, _not_serving)


class _Server(ThreadedWSGIServer):
    """werkzeug's threaded server, whose failure to bind is a ``ConfigError``."""

    def server_bind(self) -> None:
        try:
            super().server_bind()
        except OSError as exc:  # raised as an OSError, werkzeug would print it and exit
            raise ConfigError(f"cannot listen on {self.host}:{self.port} ({exc.strerror}): "
                              "stop what uses the port or choose another (--port or "
                              "ECOURT_PORT)") from None


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
