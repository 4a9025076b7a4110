"""``ecourt run`` (what ``make run`` starts) as a real process: every service and the gateway
answer on the one port, the data stays under ``--data-dir``, and Ctrl-C or a TERM from a
process manager stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ecourt import registry
from servicekit.testing import answers_ok, free_port, wait_for


@pytest.fixture
def ecourt_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ECOURT_", "GATEWAY_", "PROMETHEUS_"))
           and not k.endswith("_DATABASE_URL")}
    proc = subprocess.Popen([sys.executable, "-m", "ecourt.cli", "run", "--host", "127.0.0.1",
                             "--port", str(port), "--data-dir", str(data)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
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
