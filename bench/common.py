"""Shared plumbing for the benchmarks: isolation, processes, memory, machine facts.

Every bench isolates itself: a fresh RabbitMQ vhost (``rabbitmqctl add_vhost bench_<random>``,
deleted afterwards) and a fresh PostgreSQL database (``CREATE DATABASE bench_<random>``, dropped
afterwards), so a run never touches anything else on the machine. All traffic goes to
127.0.0.1, every loop is bounded in count and in time.
"""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

HOST = "127.0.0.1"
#: the machine's Redis; benches use keys under a prefix of their own and delete them
REDIS_URL = "redis://127.0.0.1:6379/0"
PG_ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN",
                              "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
PG_SQLA_BASE = os.environ.get("BENCH_PG_SQLA_BASE", "postgresql+psycopg://postgres@127.0.0.1:5432/")
AMQP_USER = os.environ.get("BENCH_AMQP_USER", "guest")
AMQP_PASSWORD = os.environ.get("BENCH_AMQP_PASSWORD", "guest")
AMQP_PORT = int(os.environ.get("BENCH_AMQP_PORT", "5672"))
RABBITMQCTL_TIMEOUT = 60.0

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


class BenchError(RuntimeError):
    """A bench could not produce a figure (the reason goes into RESULTS.md)."""


def random_name(prefix: str = "bench") -> str:
    return f"{prefix}_{secrets.token_hex(5)}"


def run_cmd(args: list[str], timeout: float = RABBITMQCTL_TIMEOUT) -> str:
    """Run a short command, fail loudly with its output if it fails."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(args)} failed ({proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[:500]}")
    return proc.stdout


# --------------------------------------------------------------------------------------------
# Isolation: one vhost, one database per bench
# --------------------------------------------------------------------------------------------

def amqp_url(vhost: str) -> str:
    return (f"amqp://{AMQP_USER}:{AMQP_PASSWORD}@{HOST}:{AMQP_PORT}/"
            f"{urllib.parse.quote(vhost, safe='')}")


@contextlib.contextmanager
def rabbit_vhost() -> Iterator[str]:
    """A fresh vhost for the duration of the block; yields its AMQP URL."""
    name = random_name()
    run_cmd(["rabbitmqctl", "add_vhost", name])
    try:
        run_cmd(["rabbitmqctl", "set_permissions", "-p", name, AMQP_USER, ".*", ".*", ".*"])
        yield amqp_url(name)
    finally:
        with contextlib.suppress(Exception):
            run_cmd(["rabbitmqctl", "delete_vhost", name])


@contextlib.contextmanager
def pg_database() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database; yields (libpq DSN, SQLAlchemy URL)."""
    import psycopg

    name = random_name()
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = PG_ADMIN_DSN.replace("dbname=postgres", f"dbname={name}")
        yield dsn, PG_SQLA_BASE + name
    finally:
        with contextlib.suppress(Exception), \
                psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------------------------
# Processes, ports, memory
# --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    """Resident set size of one process in KiB, from /proc/<pid>/status (VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0  # a zombie or kernel thread has no VmRSS line


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/<pid>/task/*/children)."""
    out: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    with contextlib.suppress(OSError):
        for task in task_dir.iterdir():
            with contextlib.suppress(OSError):
                out.extend(int(x) for x in (task / "children").read_text().split())
    return out


def descendants(pid: int) -> list[int]:
    seen: list[int] = []
    stack = [pid]
    while stack and len(seen) < 1000:
        for child in children(stack.pop()):
            if child not in seen:
                seen.append(child)
                stack.append(child)
    return seen


def tree_rss_kb(pid: int) -> int:
    """RSS of a process and all its descendants, in KiB (shared pages counted per process)."""
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, ValueError):
            total += rss_kb(p)
    return total


@dataclass(frozen=True)
class CpuTime:
    """CPU seconds a process tree has used, split as the kernel accounts it."""

    user: float
    system: float

    def __sub__(self, other: CpuTime) -> CpuTime:
        return CpuTime(self.user - other.user, self.system - other.system)

    @property
    def total(self) -> float:
        return self.user + self.system


_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> CpuTime:
    """User and system CPU time of a process and its living descendants, from
    /proc/<pid>/stat (fields 14 and 15, in clock ticks). Taken before and after a load run,
    the difference is what the tree spent on that run (its processes must outlive it)."""
    user = system = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{p}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
    return CpuTime(user / _TICKS, system / _TICKS)


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 2xx, the process dies, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
        time.sleep(0.2)
    raise BenchError(f"{url} did not answer within {timeout:.0f}s ({last})")


@dataclass
class Proc:
    """A child process we started, with its output captured to a file."""

    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, n: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-n:]
        return ""


#: Settings of the suite a bench process must not inherit from whoever runs the bench.
_SUITE_ENV_PREFIXES = ("ECOURT_", "GATEWAY_", "IDENTITY_", "FILING_", "MATTERS_", "DOCUMENTS_",
                       "DELIVERY_", "BANKRUPTCY_", "NOTIFIER_", "PROMETHEUS_MULTIPROC_DIR",
                       "GUNICORN_CMD_ARGS", "XDG_RUNTIME_DIR")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any suite setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SUITE_ENV_PREFIXES)}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def start(args: list[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Proc:
    """Start a process in its own process group (so we stop exactly what we started).

    ``env`` is the complete environment (see ``clean_env``); default: ``clean_env()``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log, "wb")  # noqa: SIM115 - closed with the process
    full_env = env if env is not None else clean_env()
    popen = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=full_env,
                             cwd=str(cwd or ROOT), start_new_session=True)
    fh.close()
    return Proc(popen, log)


def stop(proc: Proc, timeout: float = 10.0) -> None:
    """SIGTERM the process group we created, then SIGKILL it if it lingers."""
    if proc.popen.poll() is not None:
        return
    pgid = proc.popen.pid  # start_new_session: the group id is the child's pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        proc.popen.wait(5)


@contextlib.contextmanager
def running(args: list[str], log: Path, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> Iterator[Proc]:
    proc = start(args, log, env, cwd)
    try:
        yield proc
    finally:
        stop(proc)


def venv_tool(name: str) -> str:
    path = VENV_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        raise BenchError(f"{name} not found")
    return found


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------

@dataclass
class Figure:
    """One measured figure: the median of its runs, and the runs themselves."""

    name: str
    unit: str
    runs: list[float] = field(default_factory=list)
    note: str = ""
    error: str = ""  # set when not measured

    @property
    def value(self) -> float | None:
        return statistics.median(self.runs) if self.runs and not self.error else None


def repeat(name: str, unit: str, runs: int, fn: Callable[[], float], note: str = "") -> Figure:
    """Run ``fn`` ``runs`` times and keep every result; the figure is their median."""
    fig = Figure(name, unit, note=note)
    for _ in range(runs):
        fig.runs.append(float(fn()))
    return fig


# --------------------------------------------------------------------------------------------
# Machine and versions
# --------------------------------------------------------------------------------------------

def loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as fh:
        return " ".join(fh.read().split()[:3])


def machine_info() -> dict[str, str]:
    mem_kb = 0
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii",
                                             errors="replace") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu or platform.processor() or "?",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "os": platform.platform(),
    }


def _pkg(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    try:
        out["rabbitmq"] = run_cmd(["rabbitmqctl", "version"]).strip()
    except Exception as exc:  # noqa: BLE001
        out["rabbitmq"] = f"unknown ({exc})"
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN) as conn:
            out["postgresql"] = conn.execute("SELECT version()").fetchone()[0]
    except Exception as exc:  # noqa: BLE001
        out["postgresql"] = f"unknown ({exc})"
    try:
        proc = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10,
                              check=False)
        out["wrk"] = (proc.stdout or proc.stderr).splitlines()[0].strip()
    except Exception:  # noqa: BLE001
        out["wrk"] = "not installed"
    try:  # nginx prints its version on stderr
        proc = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10,
                              check=False)
        out["nginx"] = (proc.stderr or proc.stdout).strip().splitlines()[0]
    except Exception:  # noqa: BLE001
        out["nginx"] = "not installed"
    for pkg in ("pika", "kombu", "amqp", "psycopg", "SQLAlchemy", "Flask", "gunicorn",
                "Werkzeug", "requests"):
        out[pkg] = _pkg(pkg)
    return out
