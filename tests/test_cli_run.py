"""``ecourt run`` (what ``make run`` starts) as a real process: every service and the gateway
answer on the one port, the data stays under ``--data-dir``, and Ctrl-C or a TERM from a
process manager stops it cleanly — also during start-up; a port in use is one line, before
anything has started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ecourt import registry
from ecourt.embedded import RUN_MARKER
from servicekit.testing import answers_ok, ctrl_c_as_from_a_terminal, free_port, wait_for


def _env() -> dict[str, str]:
    """This environment without the suite's settings: the embedded defaults."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("ECOURT_", "GATEWAY_", "PROMETHEUS_"))
            and not k.endswith("_DATABASE_URL")}


def _run_args(port: int, data: Path) -> list[str]:
    return ["run", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data)]


@pytest.fixture
def ecourt_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "ecourt.cli", *_run_args(port, data)],
                            env=_env(), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            preexec_fn=ctrl_c_as_from_a_terminal)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers_ok(f"{base}/healthz") or proc.poll() is not None, timeout=120,
                 message="ecourt run to serve")
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        yield proc, base, data
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ecourt_run_serves_every_service_and_the_docs(ecourt_run) -> None:  # type: ignore[no-untyped-def]
    _, base, data = ecourt_run
    for name in registry.API_SERVICES:
        resp = requests.get(f"{base}/api/{name}/healthz", timeout=5)
        assert resp.status_code == 200, (name, resp.text)
    assert requests.get(f"{base}/docs", timeout=5).status_code == 200
    for name in registry.SERVICES:  # each service's SQLite database lives under --data-dir
        assert (data / f"{name}.db").is_file(), name


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ecourt_run_stops_cleanly(ecourt_run, sig: signal.Signals) -> None:  # type: ignore[no-untyped-def]
    proc, _, _ = ecourt_run
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # every thread's stack, to see what it waits for
        time.sleep(1)
        proc.kill()
        pytest.fail("ecourt run did not stop:\n" + (proc.communicate()[0] or b"").decode())
    assert code == 0
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert "Traceback" not in output, output


def test_a_port_in_use_is_one_line_and_exit_2_before_anything_starts(tmp_path: Path) -> None:
    """The port is bound first: a taken one stops ``ecourt run`` before a database is touched
    or a relay started — a relay would move the data folder's run marker, and the next run
    would no longer publish again what the last one left unconsumed."""
    data = tmp_path / "data"
    data.mkdir()
    marker = data / RUN_MARKER  # left by an earlier run of this data folder
    marker.write_text("2026-01-01T00:00:00+00:00", encoding="utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "ecourt.cli", *_run_args(port, data)],
                              env=_env(), cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("ecourt run: ") and f"127.0.0.1:{port}" in line, line
    assert "in use" in line, line
    assert done.stdout == ""  # not "running on ..."
    assert [p.name for p in data.iterdir()] == [RUN_MARKER]  # no database, no relay
    assert marker.read_text(encoding="utf-8") == "2026-01-01T00:00:00+00:00"


_HELD_START = textwrap.dedent("""
    import atexit, sys, threading, time
    from pathlib import Path
    from ecourt import cli, embedded

    start_workers = embedded.Suite.start_workers

    def start_then_hold(self, **kwargs):
        start_workers(self, **kwargs)
        Path(sys.argv[1]).touch()
        time.sleep(60)  # start-up held here, the workers running: the test sends TERM

    def workers_left():
        names = [t.name for t in threading.enumerate() if t.is_alive()
                 and t.name.startswith(("relay-", "consumer-", "scheduler"))]
        print("workers left:", names, flush=True)

    embedded.Suite.start_workers = start_then_hold
    atexit.register(workers_left)
    sys.exit(cli.main(sys.argv[2:]))
""")


def test_a_term_during_start_up_stops_in_order(tmp_path: Path) -> None:
    """TERM is handled before the workers start: one that comes while the suite is still
    starting stops the workers already running and ends the process with 0, instead of
    killing it with the workers mid-way."""
    started = tmp_path / "workers-started"
    proc = subprocess.Popen([sys.executable, "-c", _HELD_START, str(started),
                             *_run_args(free_port(), tmp_path / "data")],
                            env=_env(), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: started.exists() or proc.poll() is not None, timeout=120,
                 message="the suite's workers to start")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert code == 0, output
    assert "Traceback" not in output, output
    assert "stopped during start-up" in output, output
    assert "workers left: []" in output, output  # each relay and consumer joined
