"""The HTTP SMS gateway adapter against a real local HTTP server: any 2xx is a sent SMS
(an answer that is not the JSON we hoped for must not send it again), and a failure says
whether waiting for the gateway can help."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from servicekit.testing import free_port
from services.notifier.providers import HttpSmsGateway, SmsSendError

ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "/json": (200, "application/json", b'{"id": "gw-7"}'),
    "/text": (200, "text/plain", b"OK"),
    "/list": (202, "application/json", b"[1, 2]"),
    "/empty": (204, "text/plain", b""),
    "/busy": (503, "text/plain", b"try later"),
    "/slow-down": (429, "text/plain", b"too many"),
    "/refused": (400, "application/json", b'{"error": "bad number"}'),
}


class _Gateway(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, kind, body = ANSWERS[self.path]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("path", "ref"), [("/json", "gw-7"), ("/text", "m-1"),
                                           ("/list", "m-1"), ("/empty", "m-1")])
def test_any_2xx_is_sent(base: str, path: str, ref: str) -> None:
    assert HttpSmsGateway(base + path, "key").send("m-1", "13800138000", "hello") == ref


@pytest.mark.parametrize(("path", "transient"), [("/busy", True), ("/slow-down", True),
                                                 ("/refused", False)])
def test_a_failure_says_whether_waiting_helps(base: str, path: str, transient: bool) -> None:
    with pytest.raises(SmsSendError) as failed:
        HttpSmsGateway(base + path, "key").send("m-1", "13800138000", "hello")
    assert failed.value.transient is transient


def test_an_unreachable_gateway_is_worth_waiting_for() -> None:
    gateway = HttpSmsGateway(f"http://127.0.0.1:{free_port()}/sms", "key", timeout=2.0)
    with pytest.raises(SmsSendError) as failed:
        gateway.send("m-1", "13800138000", "hello")
    assert failed.value.transient
