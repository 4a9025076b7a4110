"""``ecourt run`` stopped by TERM (or Ctrl-C) while a request is being handled: the request
finishes and its answer reaches the client before the process ends (werkzeug's request
threads are daemon threads, which the end of the process would cut off). And a worker that
does not stop in time keeps the databases it may be using: ``Suite.stop`` disposes no engine
under it."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import event, text

from ecourt.embedded import Suite
from servicekit.testing import answers_ok, ctrl_c_as_from_a_terminal, free_port, wait_for

_SCRIPT = textwrap.dedent("""
    import sys, time
    from ecourt.embedded import Suite

    suite = Suite(sys.argv[1], scheduler_interval=0)
    gateway = suite.gateway
    stop = suite.stop

    def stop_and_say():
        stop()
        print("SUITE STOPPED", flush=True)

    suite.stop = stop_and_say

    def slow(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            time.sleep(float(sys.argv[3]))
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"done"]
        return gateway(environ, start_response)

    suite.gateway = slow
    try:
        suite.serve("127.0.0.1", int(sys.argv[2]))
    except KeyboardInterrupt:
        pass
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_request_in_flight_is_answered_before_the_suite_stops(tmp_path: Path,
                                                               sig: signal.Signals) -> None:
    proc, base = _serving(tmp_path, slow_seconds=2)
    try:
        answer: dict[str, object] = {}

        def ask() -> None:
            try:
                resp = requests.get(f"{base}/slow", timeout=30)
                answer["got"] = (resp.status_code, resp.text)
            except requests.RequestException as exc:
                answer["got"] = repr(exc)

        asking = threading.Thread(target=ask)
        asking.start()
        time.sleep(0.7)  # the request is being handled
        proc.send_signal(sig)
        asking.join(30)
        assert answer.get("got") == (200, "done"), answer
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _serving(tmp_path: Path, slow_seconds: float) -> tuple[subprocess.Popen[bytes], str]:
    """The suite serving in a process of its own, its ``/slow`` taking ``slow_seconds``."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ECOURT_", "GATEWAY_", "PROMETHEUS_"))
           and not k.endswith("_DATABASE_URL")}
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, str(tmp_path / "data"), str(port),
                             str(slow_seconds)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            preexec_fn=ctrl_c_as_from_a_terminal)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers_ok(f"{base}/healthz") or proc.poll() is not None,
             timeout=120, message="the suite to serve")
    if proc.poll() is not None:
        proc.kill()
        raise AssertionError(proc.stdout.read().decode() if proc.stdout else "")
    return proc, base


def test_a_second_term_during_the_drain_skips_the_wait_but_not_the_stop(tmp_path: Path) -> None:
    """The first TERM waits for the request in flight (up to 20 s); a second one means "now":
    the process ends at once, and still stops the suite in order (relays and consumers ended,
    databases disposed) instead of dying in the middle of the drain."""
    proc, base = _serving(tmp_path, slow_seconds=60)
    try:
        threading.Thread(target=lambda: _ask_quietly(f"{base}/slow"), daemon=True).start()
        time.sleep(0.7)  # the request is being handled
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # draining: the request has ~59 s to go
        assert proc.poll() is None, "the first TERM must wait for the request in flight"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert "SUITE STOPPED" in output, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _ask_quietly(url: str) -> None:
    with contextlib.suppress(requests.RequestException):
        requests.get(url, timeout=90)


def test_stop_disposes_no_engine_under_a_worker_still_running(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture
                                                                ) -> None:
    suite = Suite(tmp_path / "data", scheduler_interval=0)
    disposed: list[str] = []
    for name, rt in suite.runtimes.items():
        event.listen(rt.db.engine, "engine_disposed",
                     lambda _engine, name=name: disposed.append(name))
    inside, release = threading.Event(), threading.Event()
    done: list[int] = []

    def stuck(_stop: threading.Event) -> None:  # ignores the stop, inside a transaction
        with suite.runtimes["identity"].db.transaction() as session:
            inside.set()
            release.wait(30)
            done.append(session.scalar(text("SELECT 1")))
        with suite.runtimes["identity"].db.transaction() as session:
            done.append(session.scalar(text("SELECT 2")))

    suite._spawn("consumer-stuck", stuck)
    assert inside.wait(10)
    with caplog.at_level(logging.WARNING, logger="ecourt.embedded"):
        suite.stop(timeout=0.2)
    assert "consumer-stuck" in caplog.text
    assert disposed == []  # the worker's transaction keeps its engine's pool
    release.set()
    [thread] = suite._threads
    thread.join(10)
    assert done == [1, 2]
    suite.stop(timeout=1)  # the workers have finished now: every engine goes
    assert sorted(disposed) == sorted(suite.runtimes)
