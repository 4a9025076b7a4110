"""The services' gunicorn worker (``ecourt.service_worker``), run for real under gunicorn.

A burst of connections spreads over the workers, a busy worker still takes a new client, and
a small answer leaves as one TCP segment (counted by the client's kernel, ``TCP_INFO``).
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicekit.testing import free_port, wait_for

WORKER = "ecourt.service_worker.ServiceWorker"

APP = textwrap.dedent('''
    import os, time

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            time.sleep(0.3)
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
''')


def _gunicorn(tmp_path: Path, workers: int, threads: int, worker: str = WORKER):
    (tmp_path / "tinyapp.py").write_text(APP)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", worker, "--workers", str(workers),
         "--threads", str(threads), "--bind", f"127.0.0.1:{port}", "--chdir", str(tmp_path),
         "--worker-tmp-dir", str(tmp_path), "tinyapp:app"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    procs: list[subprocess.Popen] = []  # type: ignore[type-arg]

    def start(workers: int, threads: int) -> int:
        proc, port = _gunicorn(tmp_path, workers, threads)
        procs.append(proc)
        wait_for(lambda: _answers(port), timeout=30, message="gunicorn to serve")
        return port

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return _get(sock, "/") is not None
    except OSError:
        return False


def _get(sock: socket.socket, path: str) -> str:
    """One keep-alive GET on ``sock``; the body (the answering worker's pid)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += _recv(sock)
    return body.decode()


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("closed")
    return chunk


def test_a_burst_of_connections_spreads_over_the_workers(serve) -> None:  # type: ignore[no-untyped-def]
    """Six connections opened at once, each with a slow request, on two one-thread workers:
    both workers serve (stock ``gthread`` lets the first worker to wake take them all)."""
    port = serve(workers=2, threads=1)
    for _ in range(3):
        pids: list[str] = []
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(6)]
        threads = [threading.Thread(target=_ask_into, args=(s, pids)) for s in socks]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        for s in socks:
            s.close()
        assert len(pids) == 6
        assert len(set(pids)) == 2, f"one worker took every connection: {pids}"


def _ask_into(sock: socket.socket, pids: list[str]) -> None:
    pids.append(_get(sock, "/slow"))


def test_a_busy_worker_still_takes_a_new_client(serve) -> None:  # type: ignore[no-untyped-def]
    """One worker, one thread, kept busy by a kept-alive client: a new client is answered."""
    port = serve(workers=1, threads=1)
    stop = threading.Event()

    def busy_client() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            while not stop.is_set():
                _get(sock, "/slow")

    hog = threading.Thread(target=busy_client)
    hog.start()
    try:
        time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert _get(sock, "/").isdigit()
    finally:
        stop.set()
        hog.join(timeout=30)


#: offset of ``tcpi_data_segs_in`` in Linux's ``struct tcp_info`` (linux/tcp.h, 4.6+)
_DATA_SEGS_IN = 152


def _data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("<I", info, _DATA_SEGS_IN)[0])


@pytest.mark.skipif(sys.platform != "linux", reason="TCP_INFO's layout is Linux's")
def test_a_small_answer_leaves_as_one_segment(serve) -> None:  # type: ignore[no-untyped-def]
    """Head and body together: gunicorn writes them separately, the cork joins them."""
    port = serve(workers=1, threads=2)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        _get(sock, "/")  # the connection is set up and kept alive
        for _ in range(5):
            before = _data_segments_in(sock)
            _get(sock, "/")
            assert _data_segments_in(sock) - before == 1
