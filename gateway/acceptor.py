"""Fair accepting for the gateway's event-loop workers (``gateway.worker.EdgeWorker``).

Every gateway worker listens on the one socket gunicorn bound. An asyncio server accepts
whatever is waiting each time the socket is readable, so a burst of connections (a load test
opening 32 at once, or a front proxy filling its keep-alive pool) is often taken whole by the
worker that woke first, and kept-alive connections stay where they landed: the gateway then
forwards on one core while its other worker idles. Measured under wrk with 32 connections:
7 and 25 connections on the two workers gave 0.74 × the service's direct throughput, 15 and 17
gave 0.90 × in another round of the same A/B run.

Waiting a fixed time after each connection (the services' worker's rule,
``ecourt.service_worker``) does not suffice here: an idle event loop accepts the next
connection sooner than a sleeping sibling is scheduled, and a loop has no thread count to say
when it is full. So the workers compare notes: each publishes how many connections it holds
on a ``LoadBoard``, memory the gunicorn arbiter maps before it forks, and a worker that holds
more than a live sibling leaves a waiting connection to it, looking again every ``recheck``
(1 ms) and taking it itself after ``pause`` (10 ms), so a stuck or slow sibling delays a new
client by at most that. Workers that hold the same number take connections as they come, so a
steady stream of new connections is not slowed.

A worker holding ``limit`` connections (gunicorn's ``worker_connections``, 1,000 by default)
stops accepting until one of them closes, as nginx's ``worker_connections`` does: new clients
wait in the listen backlog or go to a sibling, and the memory a worker can be made to hold
stays bounded (connections × what each may hold unchecked; ``gateway.edge``'s body budget
counts the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import mmap
import os
import socket
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: the longest a worker leaves a waiting connection to a less loaded sibling
ACCEPT_PAUSE = 0.01
#: how often it looks again meanwhile
ACCEPT_RECHECK = 0.001
#: how long to stop accepting when the process is out of file descriptors or memory
EXHAUSTED_PAUSE = 0.5

_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LoadBoard:
    """How many connections each worker of one arbiter holds, in memory shared across ``fork``.

    A slot is a pair of 32-bit cells, the worker's pid and its count (aligned word writes: a
    reader sees the old value or the new one). The arbiter reserves a slot before it forks a
    worker (``reserve``, marked with its own pid negated so nobody counts it yet); the worker
    claims it (``claim``), and the arbiter releases it when it reaps the worker (``release``,
    from gunicorn's ``child_exit`` hook). A slot whose pid is no longer alive is ignored and
    free again, should a release be missed.
    """

    SLOTS = 64
    NOT_ACCEPTING = 2**31 - 1

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, self.SLOTS * 8)  # anonymous and shared: survives fork
        self._cells = memoryview(self._mem).cast("i")

    def reserve(self) -> int | None:
        """A free slot for a worker about to be forked (call in the arbiter); None when all
        are taken (that worker then accepts without comparing notes)."""
        for slot in range(self.SLOTS):
            pid = self._cells[2 * slot]
            if pid == 0 or not _alive(abs(pid)):
                self._cells[2 * slot + 1] = 0
                self._cells[2 * slot] = -os.getpid()
                return slot
        return None

    def release(self, slot: int) -> None:
        """The worker is gone (the arbiter reaped it): its slot is free at once."""
        self._cells[2 * slot] = 0
        self._cells[2 * slot + 1] = 0

    def claim(self, slot: int, pid: int | None = None) -> None:
        self._cells[2 * slot + 1] = 0
        self._cells[2 * slot] = pid or os.getpid()

    def publish(self, slot: int, count: int) -> None:
        self._cells[2 * slot + 1] = count

    def withdraw(self, slot: int) -> None:
        """This worker takes no more connections (it is stopping): nobody waits for it."""
        self._cells[2 * slot + 1] = self.NOT_ACCEPTING

    def least_of_others(self, slot: int) -> int | None:
        """The fewest connections a live sibling holds; None when there is none."""
        least: int | None = None
        cells = self._cells
        for other in range(self.SLOTS):
            pid = cells[2 * other]
            if other == slot or pid <= 0:
                continue
            count = cells[2 * other + 1]
            if (least is None or count < least) and _alive(pid):
                least = count
        return least


class FairAcceptor:
    """Accepts connections on ``sock`` for ``protocol_factory``, one per readiness, leaving a
    waiting connection for up to ``pause`` to a sibling on ``board`` that holds fewer than
    ``held()``. Without a board it takes connections as they come. Holding ``limit`` (0: no
    limit), it takes none until ``clients_changed`` finds one gone."""

    def __init__(self, sock: socket.socket, protocol_factory: Callable[[], asyncio.Protocol],
                 held: Callable[[], int], board: LoadBoard | None = None, slot: int = 0,
                 pause: float = ACCEPT_PAUSE, recheck: float = ACCEPT_RECHECK,
                 limit: int = 0) -> None:
        self.sock = sock
        self.factory = protocol_factory
        self.held = held
        self.board = board
        self.slot = slot
        self.pause = pause
        self.recheck = recheck
        self.limit = limit
        #: at ``limit``: not reading the socket until a connection closes
        self.full = False
        self.loop = asyncio.get_running_loop()
        self.reading = False
        self.closed = False
        self._resume: asyncio.TimerHandle | None = None
        self._yielding_since: float | None = None
        self._connecting: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        self.sock.setblocking(False)
        self._read(True)

    def close(self) -> None:
        """Stop accepting (the socket stays open: it is gunicorn's)."""
        self.closed = True
        self._read(False)
        if self._resume is not None:
            self._resume.cancel()
        if self.board is not None:
            self.board.withdraw(self.slot)

    def count(self) -> int:
        """Connections this worker holds, counting those being set up."""
        return self.held() + len(self._connecting)

    def publish(self) -> None:
        """Tell the siblings this worker's count (the edge calls it as clients come and go)."""
        if self.board is not None and not self.closed:
            self.board.publish(self.slot, self.count())

    def clients_changed(self) -> None:
        """A connection came or went (the edge calls this): tell the siblings, and take new
        ones again if a full worker has room now."""
        self.publish()
        if self.full and self.count() < self.limit:
            self.full = False
            self._read(True)

    def _read(self, on: bool) -> None:
        if on and not self.reading and not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._ready)
            self.reading = True
        elif not on and self.reading:
            self.loop.remove_reader(self.sock.fileno())
            self.reading = False

    def _wait(self, seconds: float) -> None:
        self._read(False)
        self._resume = self.loop.call_later(seconds, self._read, True)

    def _should_yield(self) -> bool:
        if self.board is None:
            return False
        least = self.board.least_of_others(self.slot)
        if least is None or self.count() <= least:
            self._yielding_since = None
            return False
        now = time.monotonic()
        if self._yielding_since is None:
            self._yielding_since = now
        if now - self._yielding_since < self.pause:
            return True
        self._yielding_since = None  # nobody took it: take it
        return False

    def _ready(self) -> None:
        if self.limit and self.count() >= self.limit:
            if not self.full:
                log.warning("gateway: this worker holds %d connections (worker_connections); "
                            "new ones wait until one closes", self.limit)
            self.full = True
            self._read(False)
            return
        if self._should_yield():
            self._wait(self.recheck)
            return
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return  # a sibling took it
        except OSError as exc:
            if exc.errno in _EXHAUSTED:
                log.warning("gateway: cannot accept (%s); pausing %.1f s", exc, EXHAUSTED_PAUSE)
                self._wait(EXHAUSTED_PAUSE)
                return
            if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                return  # the client gave up while waiting in the backlog
            raise
        conn.setblocking(False)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = self.loop.create_task(self._connect(conn))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        self.publish()  # now: a sibling may be deciding this instant

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn)
        except Exception:  # noqa: BLE001 - one connection's failure must not stop accepting
            log.exception("gateway: could not set up an accepted connection")
            conn.close()
