"""Benches of the suite's HTTP processes: the gateway's cost, and memory.

* ``api_and_gateway``  ``ecourt serve identity`` (2 threaded workers, fresh PostgreSQL
                       database) and two ``ecourt serve gateway`` (2 event-loop workers each,
                       ``gateway.worker.EdgeWorker``) routing to it, one counting limits in
                       memory and one sharing them through Redis; yields the URLs of the same
                       trivial route (``GET /healthz``, public) directly and through each
                       gateway (``/api/identity/healthz``).
* ``embedded_idle_rss``  ``ecourt run`` on a temp data folder: RSS of the process tree after it
                       answers ``/healthz`` and idles 3 s.
* ``api_worker_rss``   ``ecourt serve identity --workers 1``: RSS of the one gunicorn worker
                       after a few requests.

Every process gets a clean environment (no inherited suite settings), loopback binds, a temp
data folder and its own gunicorn control-socket folder, and is stopped by its process group.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    HOST,
    ROOT,
    BenchError,
    clean_env,
    descendants,
    free_port,
    random_name,
    rss_kb,
    running,
    tree_rss_kb,
    wait_http,
)

#: The route timed directly and through the gateway: public, trivial, served by the kit.
ROUTE = "/healthz"
SERVICE = "identity"
#: An address nothing listens on, for the gateway's other upstreams (never called here).
UNUSED_UPSTREAM = "http://127.0.0.1:9"


def ecourt_cmd() -> list[str]:
    script = Path(sys.executable).parent / "ecourt"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ecourt.cli"]


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _server_env(tmp: Path, name: str, **extra: str) -> dict[str, str]:
    xdg = tmp / f"xdg-{name}"
    prom = tmp / f"prom-{name}"
    for d in (xdg, prom):
        d.mkdir(parents=True, exist_ok=True)
    return clean_env(ECOURT_DATA_DIR=str(tmp / "data"), ECOURT_LOG_LEVEL="WARNING",
                     XDG_RUNTIME_DIR=str(xdg), PROMETHEUS_MULTIPROC_DIR=str(prom), **extra)


@dataclass
class ApiUrls:
    direct: str
    gateway: str
    api_pid: int  # gunicorn's arbiter of each: its tree holds the workers
    gateway_pid: int
    redis_gateway: str  # the same route through a gateway whose limits are in Redis
    redis_gateway_pid: int


def _gateway_upstreams(api_base: str) -> dict[str, str]:
    try:
        from ecourt import registry

        names = list(registry.API_SERVICES)
    except Exception:  # noqa: BLE001 - registry import problems show up when serving
        names = [SERVICE]
    return {f"GATEWAY_UPSTREAM_{n.upper()}": api_base if n == SERVICE else UNUSED_UPSTREAM
            for n in names}


@contextlib.contextmanager
def api_and_gateway(db_url: str, log_dir: Path, redis_url: str,
                    workers: int = 2) -> Iterator[ApiUrls]:
    """identity's API and two gateways in front of it, each under gunicorn with ``workers``
    workers: one with the in-memory limiter, one with its limits shared through Redis at
    ``redis_url`` (as deployed; its keys under a prefix of this run's, removed afterwards)."""
    with temp_dir("bench-gw-") as tmp, redis_prefix(redis_url) as prefix:
        p_api = free_port()
        api_base = f"http://{HOST}:{p_api}"
        api_env = _server_env(tmp, "api", IDENTITY_DATABASE_URL=db_url)
        api_cmd = [*ecourt_cmd(), "serve", SERVICE, "--bind", f"{HOST}:{p_api}",
                   "--workers", str(workers)]
        with (running(api_cmd, log_dir / "identity-api.log", api_env) as api,
              contextlib.ExitStack() as stack):
            _wait(f"{api_base}{ROUTE}", api, 120)
            gateways = []
            for name, extra in (("gw", {}), ("gw-redis", {
                    "ECOURT_REDIS_URL": redis_url, "GATEWAY_RATE_KEY_PREFIX": prefix})):
                port = free_port()
                env = _server_env(tmp, name, ECOURT_JWKS_URL=f"{api_base}/.well-known/jwks.json",
                                  # the bench measures forwarding, not refusals: no 429s
                                  GATEWAY_RATE_LIMIT="1000000000", GATEWAY_RATE_WINDOW="60",
                                  **_gateway_upstreams(api_base), **extra)
                cmd = [*ecourt_cmd(), "serve", "gateway", "--bind", f"{HOST}:{port}",
                       "--workers", str(workers)]
                gw = stack.enter_context(running(cmd, log_dir / f"{name}.log", env))
                url = f"http://{HOST}:{port}/api/{SERVICE}{ROUTE}"
                _wait(url, gw, 60)
                gateways.append((url, gw.pid))
            (gw_url, gw_pid), (redis_gw_url, redis_gw_pid) = gateways
            yield ApiUrls(f"{api_base}{ROUTE}", gw_url, api.pid, gw_pid, redis_gw_url,
                          redis_gw_pid)


@contextlib.contextmanager
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this bench run's in Redis; every key under it is deleted afterwards."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    client.ping()  # fail here, clearly, when Redis is not there
    prefix = f"ecourt:rl:{random_name('bench')}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)


def _wait(url: str, proc, timeout: float) -> None:  # type: ignore[no-untyped-def]
    try:
        wait_http(url, timeout=timeout, proc=proc.popen)
    except BenchError as exc:
        raise BenchError(f"{exc}; log tail: {proc.tail(600)}") from exc


def _get(url: str, times: int) -> None:
    for _ in range(times):
        with urllib.request.urlopen(url, timeout=5) as resp:
            resp.read()


@dataclass
class Rss:
    main_mb: float
    tree_mb: float
    processes: int


def embedded_idle_rss(log_dir: Path, idle: float = 3.0) -> Rss:
    """``ecourt run`` (embedded tier: SQLite, in-memory bus) idle after its first answer."""
    with temp_dir("bench-embedded-") as tmp:
        port = free_port()
        env = _server_env(tmp, "embedded")
        cmd = [*ecourt_cmd(), "run", "--host", HOST, "--port", str(port),
               "--data-dir", str(tmp / "data")]
        with running(cmd, log_dir / "embedded.log", env) as proc:
            _wait(f"http://{HOST}:{port}/healthz", proc, 180)
            time.sleep(idle)
            if proc.popen.poll() is not None:
                raise BenchError(f"ecourt run exited: {proc.tail(600)}")
            return Rss(rss_kb(proc.pid) / 1024, tree_rss_kb(proc.pid) / 1024,
                       1 + len(descendants(proc.pid)))


def api_worker_rss(db_url: str, log_dir: Path, requests: int = 50, idle: float = 2.0) -> Rss:
    """``ecourt serve identity --workers 1``: the worker's RSS after ``requests`` requests."""
    with temp_dir("bench-api-") as tmp:
        port = free_port()
        env = _server_env(tmp, "api1", IDENTITY_DATABASE_URL=db_url)
        cmd = [*ecourt_cmd(), "serve", SERVICE, "--bind", f"{HOST}:{port}", "--workers", "1"]
        with running(cmd, log_dir / "identity-api-1.log", env) as proc:
            base = f"http://{HOST}:{port}"
            _wait(base + ROUTE, proc, 120)
            _get(base + ROUTE, requests)
            _get(base + "/readyz", 5)
            time.sleep(idle)
            workers = descendants(proc.pid)
            if len(workers) != 1:
                raise BenchError(f"expected one gunicorn worker, found {len(workers)}")
            return Rss(rss_kb(workers[0]) / 1024, tree_rss_kb(proc.pid) / 1024,
                       1 + len(workers))


def ecourt_available() -> str | None:
    """Why the suite's CLI cannot be benched yet, or None when it can."""
    missing = [p for p in ("ecourt/cli.py", "ecourt/serving.py", "gateway/app.py",
                           f"services/{SERVICE}/app.py") if not (ROOT / p).exists()]
    return f"missing {', '.join(missing)}" if missing else None
