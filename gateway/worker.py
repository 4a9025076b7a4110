"""A gunicorn worker that serves the gateway with ``gateway.edge`` on a uvloop event loop.

gunicorn keeps doing what it is good at — binding, forking, restarting a dead worker, the
heartbeat, graceful stops, the ``child_exit`` hook that keeps multiprocess metrics right — and
the worker swaps the thread-per-request loop for one event loop, which takes connections from
the shared socket fairly (``gateway.acceptor``). The app gunicorn loads must be
the ``Gateway`` (``ecourt serve gateway`` builds it); its own pages and ``HEAD`` requests run on
a pool of ``threads`` threads.

Signals: TERM (and INT, QUIT) stop accepting, let answers in flight finish within
``graceful_timeout``, then exit; USR1 reopens log files, as in every gunicorn worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gunicorn.workers.base import Worker

from gateway.acceptor import FairAcceptor, LoadBoard
from gateway.app import Gateway
from gateway.edge import EdgeServer, EdgeSettings


class EdgeWorker(Worker):
    loop: asyncio.AbstractEventLoop
    #: the connection counts of this arbiter's workers (mapped in the arbiter, before forking)
    _board: LoadBoard | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # in the arbiter, before the fork
        if EdgeWorker._board is None:
            EdgeWorker._board = LoadBoard()
        self.board = EdgeWorker._board
        self.board_slot = self.board.reserve()

    def release_slot(self) -> None:
        """Called in the arbiter when this worker has exited (``child_exit``)."""
        if self.board_slot is not None:
            self.board.release(self.board_slot)

    def init_process(self) -> None:
        import uvloop

        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.stopping = asyncio.Event()
        super().init_process()

    def _loop_signals(self) -> None:
        """Hand the signals to the running loop. Until it runs, gunicorn's own handlers (set
        in ``init_signals``) are in place: a TERM during start-up still stops the worker."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            self.loop.add_signal_handler(sig, self._stop)
        self.loop.add_signal_handler(signal.SIGUSR1, self.handle_usr1, signal.SIGUSR1, None)
        self.loop.add_signal_handler(signal.SIGABRT, self.handle_abort, signal.SIGABRT, None)

    def _stop(self) -> None:
        self.alive = False
        self.stopping.set()

    def run(self) -> None:
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._loop_signals()
        if not self.alive:  # stopped while starting
            return
        app: Any = self.wsgi
        if not isinstance(app, Gateway):
            raise TypeError("EdgeWorker serves the gateway only")
        executor = ThreadPoolExecutor(max_workers=max(1, self.cfg.threads),
                                      thread_name_prefix="gateway-wsgi")
        edge = EdgeServer(app, executor, EdgeSettings(
            keepalive=float(max(self.cfg.keepalive, 1)),
            max_head=self.cfg.limit_request_line + self.cfg.limit_request_field_size * 8
            if self.cfg.limit_request_line else EdgeSettings.max_head,
        ))
        slot = self.board_slot
        if slot is not None:
            self.board.claim(slot)
        acceptors = [FairAcceptor(listener.sock, edge.protocol, edge.held,
                                  self.board if slot is not None else None, slot or 0,
                                  limit=self.cfg.worker_connections)
                     for listener in self.sockets]

        def clients_changed() -> None:
            for acceptor in acceptors:
                acceptor.clients_changed()

        edge.on_clients = clients_changed
        for acceptor in acceptors:
            acceptor.start()
        sweeper = self.loop.create_task(edge.sweeper(self.stopping))
        try:
            while self.alive:
                self.notify()
                if self.ppid != os.getppid():
                    self.log.info("Parent changed, shutting down: %s", self)
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), 1.0)
        finally:
            for acceptor in acceptors:
                acceptor.close()
            await edge.drain(float(self.cfg.graceful_timeout))
            self.stopping.set()
            await sweeper
            executor.shutdown(wait=False, cancel_futures=True)
