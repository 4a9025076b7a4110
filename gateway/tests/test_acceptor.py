"""Fair accepting (``gateway.acceptor``): one connection per readiness, a pause after each while
requests are in flight, and — under gunicorn with two workers — a burst of connections spread
over both (which worker holds each one is read from ``/proc``, as ``ss -p`` does)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import uvloop

from gateway.acceptor import FairAcceptor, LoadBoard
from gateway.tests.conftest import make_upstream
from gateway.tests.test_upstream_http import _closed_port
from servicekit.testing import answers_ok, wait_for


def _accepted(pending: int, run_for: float, sibling: tuple[int, int] | None = None,
              pause: float = 30.0, sibling_stopped: bool = False) -> int:
    """Connections a ``FairAcceptor`` has set up after ``run_for`` s, with ``pending`` waiting
    in the backlog when it starts, and a sibling worker (pid, connections held) on its board."""
    made: list[asyncio.BaseTransport] = []

    class Proto(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            made.append(transport)

    board = LoadBoard()
    slot = board.reserve()
    board.claim(slot)
    if sibling is not None:
        other = board.reserve()
        board.claim(other, pid=sibling[0])
        board.publish(other, sibling[1])
        if sibling_stopped:
            board.withdraw(other)
    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        for _ in range(pending):
            stack.enter_context(socket.create_connection(listener.getsockname(), timeout=5))

        async def main() -> int:
            acceptor = FairAcceptor(listener, Proto, lambda: len(made), board, slot,
                                    pause=pause)
            acceptor.start()
            await asyncio.sleep(run_for)
            acceptor.close()
            for transport in made:
                transport.close()
            return len(made)

        loop = uvloop.new_event_loop()
        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_lone_worker_takes_every_waiting_connection() -> None:
    assert _accepted(pending=5, run_for=0.3) == 5


def test_a_worker_leaves_connections_to_a_sibling_that_holds_fewer() -> None:
    """It takes the first (both hold none), then holds one more than its sibling and waits."""
    assert _accepted(pending=5, run_for=0.3, sibling=(os.getppid(), 0)) == 1


def test_a_sibling_that_does_not_take_them_delays_a_connection_by_the_pause_at_most() -> None:
    assert _accepted(pending=3, run_for=0.6, sibling=(os.getppid(), 0), pause=0.05) == 3


def test_a_worker_takes_connections_while_its_siblings_hold_as_many() -> None:
    assert _accepted(pending=5, run_for=0.3, sibling=(os.getppid(), 5)) == 5


def test_a_stopping_sibling_is_not_waited_for() -> None:
    """A worker draining its last answers holds few connections but takes no new ones."""
    assert _accepted(pending=5, run_for=0.3, sibling=(os.getppid(), 0),
                     sibling_stopped=True) == 5


def test_a_dead_siblings_count_is_ignored() -> None:
    assert _accepted(pending=5, run_for=0.3, sibling=(_dead_pid(), 0)) == 5


def test_a_worker_at_its_connection_limit_waits_until_one_closes() -> None:
    """As nginx's worker_connections: at ``limit`` the worker leaves new clients in the
    backlog (or to a sibling) instead of taking every one it is offered; when one of its
    connections closes it takes the next."""
    made: list[asyncio.BaseTransport] = []
    acceptors: list[FairAcceptor] = []  # the edge's on_clients: tell the acceptor

    class Proto(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            made.append(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            acceptors[0].clients_changed()

    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        for _ in range(5):
            stack.enter_context(socket.create_connection(listener.getsockname(), timeout=5))

        async def main() -> tuple[int, int, int]:
            acceptor = FairAcceptor(listener, Proto, lambda: sum(not t.is_closing()
                                                                for t in made), limit=2)
            acceptors.append(acceptor)
            acceptor.start()
            await asyncio.sleep(0.3)
            at_limit = len(made)
            made[0].close()
            await asyncio.sleep(0.3)
            after_one_closed = len(made)
            for transport in made:
                transport.close()
            await asyncio.sleep(0.3)
            acceptor.close()
            return at_limit, after_one_closed, len(made)

        loop = uvloop.new_event_loop()
        try:
            assert loop.run_until_complete(main()) == (2, 3, 5)
        finally:
            loop.close()


def test_a_released_slot_is_free_and_a_full_board_hands_out_none() -> None:
    board = LoadBoard()
    slots = [board.reserve() for _ in range(LoadBoard.SLOTS)]
    assert None not in slots and board.reserve() is None  # the worker accepts on its own
    board.release(slots[5])
    assert board.reserve() == slots[5]


def test_the_board_hands_out_free_slots_and_takes_back_a_dead_workers() -> None:
    board = LoadBoard()
    first, second = board.reserve(), board.reserve()
    assert first != second
    board.claim(first)
    board.claim(second, pid=_dead_pid())
    board.publish(second, 7)
    assert board.least_of_others(first) is None  # a reserved or dead slot counts for nobody
    assert board.reserve() == second  # the dead worker's slot is free again
    assert board.least_of_others(first) is None  # reserved, not yet claimed


# -- two gunicorn workers ------------------------------------------------------------------------


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _inodes_by_remote_port(local_port: int) -> dict[int, int]:
    """Inode of each established IPv4 TCP socket on ``local_port``, by its remote port."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if state == "01" and int(local.split(":")[1], 16) == local_port:
            found[int(remote.split(":")[1], 16)] = inode
    return found


def _holders(pids: list[int], port: int, clients: list[socket.socket]) -> list[int]:
    """How many of ``clients``' connections each of ``pids`` holds."""
    inodes = _inodes_by_remote_port(port)
    mine = [inodes.get(c.getsockname()[1]) for c in clients]
    return [sum(1 for i in mine if i in _socket_inodes(pid)) for pid in pids]


def _workers(arbiter: int) -> list[int]:
    children = Path(f"/proc/{arbiter}/task/{arbiter}/children").read_text().split()
    return [int(c) for c in children]


@contextmanager
def _ecourt_serve_gateway(upstream_url: str, tmp_path: Path, workers: int,
                          **env_vars: str) -> Iterator[tuple[int, int]]:
    """``ecourt serve gateway --workers N`` in front of ``upstream_url``; (arbiter, port)."""
    port = _closed_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ECOURT_", "GATEWAY_", "PROMETHEUS_"))}
    from ecourt import registry

    for name in registry.API_SERVICES:
        env[f"GATEWAY_UPSTREAM_{name.upper()}"] = upstream_url
    env.update(ECOURT_JWKS_URL=f"http://127.0.0.1:{_closed_port()}/jwks",
               PROMETHEUS_MULTIPROC_DIR=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path),
               ECOURT_LOG_LEVEL="WARNING", GATEWAY_RATE_LIMIT="1000000", **env_vars)
    with (tmp_path / "gateway.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ecourt.cli", "serve", "gateway",
                                 "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            service = registry.API_SERVICES[0]
            wait_for(lambda: answers_ok(f"http://127.0.0.1:{port}/api/{service}/healthz")
                     and len(_workers(proc.pid)) == workers, timeout=60, message="the gateway")
            yield proc.pid, port
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture
def gateway_with_two_workers(serve, tmp_path: Path) -> Iterator[tuple[int, int]]:  # type: ignore[no-untyped-def]
    """``ecourt serve gateway --workers 2`` in front of the tiny upstream; (arbiter, port)."""
    with _ecourt_serve_gateway(serve(make_upstream()).url, tmp_path, 2) as (arbiter, port):
        # a worker still loading the app has not claimed its slot: wait for both
        wait_for(lambda: _both_serve(_workers(arbiter), port), timeout=60,
                 message="both workers to accept")
        yield arbiter, port


def test_ecourt_serve_holds_at_most_its_worker_connections(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``ECOURT_WORKER_CONNECTIONS`` reaches the gateway's worker: with 2, a third client is
    not answered while two keep their connections, and is once one of them leaves."""
    from ecourt import registry

    head = f"GET /api/{registry.API_SERVICES[0]}/healthz HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    with (_ecourt_serve_gateway(serve(make_upstream()).url, tmp_path, 1,
                                ECOURT_WORKER_CONNECTIONS="2") as (_, port),
          ExitStack() as stack):
        held = [stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
                for _ in range(2)]
        for sock in held:
            sock.sendall(head)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        third = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        third.sendall(head)
        third.settimeout(0.5)
        with pytest.raises(TimeoutError):
            third.recv(65536)
        held[0].close()
        third.settimeout(5)
        assert third.recv(65536).startswith(b"HTTP/1.1 200")


def _both_serve(workers: list[int], port: int) -> bool:
    clients = []
    try:
        for _ in range(6):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            time.sleep(0.02)
        time.sleep(0.1)
        return min(_holders(workers, port, clients)) > 0
    finally:
        for c in clients:
            c.close()



def _burst(workers: list[int], port: int) -> list[int]:
    """Open 32 connections at once, each asking for a route and keeping its connection, as a
    load generator or a front proxy's pool does; how many each worker holds."""
    from ecourt import registry

    head = (f"GET /api/{registry.API_SERVICES[0]}/healthz HTTP/1.1\r\nHost: t\r\n\r\n").encode()
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(32)]
    try:
        threads = [threading.Thread(target=c.sendall, args=(head,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in clients:
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 5
        while (held := _holders(workers, port, clients)) and sum(held) < 32:
            assert time.monotonic() < deadline, held
            time.sleep(0.05)
        return held
    finally:
        for c in clients:
            c.close()


def test_a_burst_of_connections_spreads_over_both_workers(gateway_with_two_workers) -> None:  # type: ignore[no-untyped-def]
    """Each worker holds at least a quarter of a burst of 32; so do the workers after one was
    killed and replaced (its slot on the board goes to the new one)."""
    arbiter, port = gateway_with_two_workers
    workers = _workers(arbiter)
    for _ in range(3):
        held = _burst(workers, port)
        assert min(held) >= 8, f"connections per worker: {held}"

    os.kill(workers[0], signal.SIGKILL)
    wait_for(lambda: len(set(_workers(arbiter)) - {workers[0]}) == 2, timeout=60,
             message="gunicorn to replace the killed worker")
    workers = _workers(arbiter)
    wait_for(lambda: _both_serve(workers, port), timeout=60, message="the new worker to accept")
    held = _burst(workers, port)
    assert min(held) >= 8, f"connections per worker after a restart: {held}"


def test_closing_an_acceptor_withdraws_it_and_later_counts_are_not_published() -> None:
    board = LoadBoard()
    mine, watcher = board.reserve(), board.reserve()
    board.claim(mine)
    board.claim(watcher, pid=os.getppid())

    async def main() -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            acceptor = FairAcceptor(listener, asyncio.Protocol, lambda: 3, board, mine)
            acceptor.start()
            acceptor.publish()
            assert board.least_of_others(watcher) == 3
            acceptor.close()
            acceptor.publish()  # a connection closing while the worker drains
            assert board.least_of_others(watcher) == LoadBoard.NOT_ACCEPTING

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
