"""The embedded server counts a request as in flight until its answer is sent, whatever the
client did meanwhile: a count left at one made every later stop of ``ecourt run`` wait out
the whole drain (20 s) for a request long gone."""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from ecourt.embedded_server import InFlight, listen
from servicekit.testing import wait_for


@pytest.fixture
def served() -> Iterator[tuple[InFlight, int, dict[str, Any]]]:
    """A tiny app behind ``InFlight`` on the suite's server: it answers once told to
    (``state["go"]``) and records whether its answer's ``close`` was called."""
    state: dict[str, Any] = {"go": threading.Event(), "closed": threading.Event(),
                             "closes": 0}

    class Answer:
        def __iter__(self) -> Iterator[bytes]:
            yield b"ok"

        def close(self) -> None:
            state["closes"] += 1
            state["closed"].set()

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        state["go"].wait(10)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return Answer()

    server = listen("127.0.0.1", 0)
    in_flight = InFlight(app)
    server.app = in_flight
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield in_flight, server.port, state
    finally:
        server.shutdown()
        server.server_close()


def test_a_client_that_resets_after_its_answer_is_not_counted_for_ever(
        served: tuple[InFlight, int, dict[str, Any]]) -> None:
    """After an answer werkzeug's server reads what the client still sends, to discard it; a
    client that then resets the connection (a browser tab closed, a probe giving up) raised
    the reset out of that read, and the server, treating it as a dropped connection, never
    called the answer's ``close``: the request stayed counted — every later stop of ``ecourt
    run`` waited out its whole drain (20 s) — and the gateway's access record (written at
    ``close``) was never made."""
    in_flight, port, state = served
    state["go"].set()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        # bytes after the request that the app never reads: the server's discarding read
        # waits on them until the reset
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"unread" * 10)
        data = b""
        while not data.endswith(b"ok"):
            data += client.recv(4096)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # closed with linger 0: a reset, not a FIN
    assert data.startswith(b"HTTP/1.1 200")
    assert in_flight.drained(5), f"{in_flight.count} request(s) still counted"
    assert state["closed"].wait(5), "the answer's close was never called"


def test_an_answer_sent_is_closed_once(served: tuple[InFlight, int, dict[str, Any]]) -> None:
    in_flight, port, state = served
    state["go"].set()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := client.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok")
    assert in_flight.drained(5) and in_flight.count == 0
    assert state["closed"].wait(5)
    threading.Event().wait(0.2)  # the server's own close, after its discarding read
    assert state["closes"] == 1


def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(("request_bytes", "status", "slug"), [
    (b"GET /\x00 x y z\r\n\r\n", 400, "bad-request"),                  # no readable line
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400, "bad-request"),  # TLS to plain HTTP
    (b"GET / HTTP/2.0\r\n\r\n", 505, "http-version-not-supported"),
    (b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431, "headers-too-large"),
])
def test_what_is_not_http_is_answered_with_a_problem(
        served: tuple[InFlight, int, dict[str, Any]], request_bytes: bytes, status: int,
        slug: str) -> None:
    """``http.server`` answered these with an HTML page, and a request line it could not read
    without even a status line; the suite's errors are problem+json in both tiers (the
    distributed edge answers the same), and the request's bytes are not echoed back."""
    _, port, _ = served
    answer = _exchange(port, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    assert b"\r\nContent-Type: application/problem+json\r\n" in head + b"\r\n"
    problem = json.loads(body)
    assert problem["status"] == status and problem["type"].endswith("/" + slug)
    assert b"z" not in body and b"HTTP/2.0" not in body


def test_the_servers_log_lines_carry_no_terminal_colours(
        served: tuple[InFlight, int, dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    """werkzeug colours an access line by its status (ANSI escapes); in the suite's JSON log
    lines they were noise ("\\u001b[31m\\u001b[1mGET …")."""
    _, port, state = served
    state["go"].set()
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        _exchange(port, b"GET /x HTTP/9.1\r\n\r\n")  # a 505: werkzeug's boldest colours
        _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: len([r for r in caplog.records if r.name == "werkzeug"]) >= 3,
                 timeout=5, message="the server to log")
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any('"GET /x HTTP/9.1" 505' in line for line in lines), lines
    assert all("\x1b" not in line for line in lines), lines
