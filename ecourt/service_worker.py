"""gunicorn's threaded worker for the services: fair accepting, one segment per small answer.

**Accepting.** Every worker of a service listens on the one socket, and gunicorn's
``gthread`` worker accepts whatever is waiting whenever the socket is readable, up to
``worker_connections`` (1,000). A burst of connections (a load test opening 32 at once, or
the gateway's keep-alive pools filling at start-up) is then often taken whole by the worker
that woke first, and kept-alive connections stay where they landed: the service runs on one
core while its other workers idle (measured: 32 connections to one worker and 0 to the other
in three rounds of five, at half the throughput; see ``bench/README.md``).

The rule here: a worker whose threads are all busy stops accepting, so a waiting connection
goes to a worker with a free thread. A busy worker still takes one new connection per
``ACCEPT_PAUSE``, so when every worker is busy a new client is not starved by the kept-alive
ones: it waits in the listen backlog at most about that long per connection ahead of it.

**Sending.** gunicorn writes a response's head and its body in two ``sendall`` calls, so a
small JSON answer leaves as two TCP segments: two trips through the network stack for the
service, and two wake-ups and reads for the gateway (or client) on the other end. The socket
is corked (``TCP_CORK``) while a request is handled and uncorked when its answer is written:
the kernel then sends head and body together, and a long body still leaves in full segments
as it is written (a cork never holds a full segment back). A route that streams small pieces
slowly (none does today) would see each piece held until a segment fills or 200 ms pass.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

#: how long a busy worker leaves new connections to the others
ACCEPT_PAUSE = 0.01


class ServiceWorker(ThreadWorker):
    """``gthread`` with accepting tied to a free thread, and corked answers (see above)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: requests handed to the thread pool and not finished (main thread only)
        self.busy = 0
        #: when this worker last took a connection with every thread busy
        self._busy_accept_at = float("-inf")

    def may_accept(self) -> bool:
        """A free thread, or no connection taken while busy for ``ACCEPT_PAUSE``."""
        return (self.busy < self.cfg.threads
                or time.monotonic() - self._busy_accept_at >= ACCEPT_PAUSE)

    def set_accept_enabled(self, enabled: bool) -> None:
        # gunicorn's loop calls this whenever its own rule (room below worker_connections)
        # disagrees with the current state, so a refusal here is looked at again each turn.
        super().set_accept_enabled(enabled and self.may_accept())

    def accept(self, listener: Any) -> None:
        before = self.nr_conns
        super().accept(listener)
        if self.nr_conns > before and self.busy >= self.cfg.threads:
            self._busy_accept_at = time.monotonic()
            super().set_accept_enabled(False)

    def enqueue_req(self, conn: Any) -> None:
        self.busy += 1
        super().enqueue_req(conn)
        if self._accepting and not self.may_accept():
            super().set_accept_enabled(False)

    def finish_request(self, conn: Any, fs: Any) -> None:
        self.busy -= 1
        super().finish_request(conn, fs)

    def handle_request(self, req: Any, conn: Any) -> bool:
        _cork(conn.sock, True)
        try:
            return bool(super().handle_request(req, conn))
        finally:
            _cork(conn.sock, False)


def _cork(sock: socket.socket, on: bool) -> None:
    """Cork or uncork (uncorking sends what waits); a socket already gone is let be."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1 if on else 0)
