"""Running ``wrk`` and reading its ``--latency`` report."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from bench.common import BenchError

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_LAT = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", re.M)
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKERR = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int  # connect + write + timeout (read errors are counted but see below)
    read_errors: int
    raw: str


def ensure_wrk() -> str:
    """Return the wrk binary; install it with apt-get only if absent and we are root."""
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() != 0:
        raise BenchError("wrk is not installed and we are not root (apt-get install -y wrk)")
    proc = subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, text=True,
                          timeout=300, check=False)
    path = shutil.which("wrk")
    if proc.returncode != 0 or not path:
        raise BenchError(f"apt-get install -y wrk failed: {proc.stderr.strip()[-300:]}")
    return path


def parse(text: str) -> WrkResult:
    """Parse wrk 4.x output printed with ``--latency``."""
    rps = _RPS.search(text)
    lat = {m.group(1): float(m.group(2)) * _UNITS[m.group(3)] for m in _LAT.finditer(text)}
    total = _TOTAL.search(text)
    if not rps or "50" not in lat or "99" not in lat or not total:
        raise BenchError(f"cannot parse wrk output:\n{text[-800:]}")
    non2xx = _NON2XX.search(text)
    sock = _SOCKERR.search(text)
    connect = read = write = timeout = 0
    if sock:
        connect, read, write, timeout = (int(x) for x in sock.groups())
    return WrkResult(rps=float(rps.group(1)), p50_ms=lat["50"], p99_ms=lat["99"],
                     requests=int(total.group(1)),
                     non_2xx=int(non2xx.group(1)) if non2xx else 0,
                     socket_errors=connect + write + timeout, read_errors=read, raw=text)


def run_wrk(url: str, connections: int = 32, duration: float = 5.0, threads: int = 2,
            warmup: float = 1.0) -> WrkResult:
    """One wrk run (after a short unrecorded warm-up) against ``url`` on 127.0.0.1."""
    if not url.startswith(("http://127.0.0.1", "http://localhost")):
        raise BenchError("wrk is only ever pointed at 127.0.0.1")
    binary = ensure_wrk()
    threads = max(1, min(threads, connections))

    def once(seconds: float) -> str:
        args = [binary, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                "--timeout", "5s", "--latency", url]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60,
                              check=False)
        if proc.returncode != 0:
            raise BenchError(f"wrk failed: {(proc.stderr or proc.stdout).strip()[:500]}")
        return proc.stdout

    if warmup > 0:
        once(warmup)
    result = parse(once(duration))
    if result.non_2xx or result.socket_errors:
        raise BenchError(f"wrk saw {result.non_2xx} non-2xx responses and "
                         f"{result.socket_errors} socket errors against {url}")
    return result
