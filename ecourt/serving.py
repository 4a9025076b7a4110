"""One service (or the gateway) under gunicorn, with prometheus multiprocess metrics."""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication

from servicekit import logs, metrics
from servicekit.config import Settings, env_float, env_int


def build_wsgi(service: str) -> Any:
    """The WSGI app of ``service`` in the distributed tier (built in each worker)."""
    logs.configure(service, os.environ.get("ECOURT_LOG_LEVEL", "INFO"))
    if service == "gateway":
        from ecourt import registry
        from ecourt.runtime import distributed_verifier
        from gateway.app import create_gateway
        from gateway.ratelimit import from_env

        upstreams = {name: os.environ.get(f"GATEWAY_UPSTREAM_{name.upper()}",
                                          f"http://{name}-api:8000")
                     for name in registry.API_SERVICES}
        return create_gateway(upstreams=upstreams, verifier=distributed_verifier(),
                              rate_limiter=from_env())
    from ecourt import registry
    from ecourt.runtime import distributed_verifier, make_runtime

    definition = registry.get(service)
    if definition.build_app is None:
        raise SystemExit(f"{service} has no HTTP API")
    verifier = None if service == "identity" else distributed_verifier()
    rt = make_runtime(definition, Settings.from_env(service), verifier, migrate=False)
    if service == "identity":
        from ecourt.runtime import local_verifier

        rt.verifier = local_verifier()
    return definition.build_app(rt)


def check_settings(service: str) -> None:
    """Read the settings ``build_wsgi`` will read, so that a bad one is a ConfigError in the
    command, before gunicorn forks a worker that would fail on it: the gateway's limits, CORS
    origins and metrics readers, a service's own settings, identity's signing and previous
    keys."""
    if service == "gateway":
        from gateway.cors import policy_from
        from gateway.edge_service import client_connections_cap
        from gateway.metrics_access import readers_from
        from gateway.ratelimit import limits_from_env

        limits_from_env()
        policy_from(None)
        readers_from()
        env_float("GATEWAY_RATE_SYNC_MS", 100.0, minimum=0)
        client_connections_cap()
        return
    Settings.from_env(service)
    if service == "identity":
        from services.identity.keys import load_jwks

        load_jwks()


def _child_exit(_server: Any, worker: Any) -> None:
    metrics.mark_process_dead(worker.pid)
    release = getattr(worker, "release_slot", None)  # the gateway's fair accepting
    if release is not None:
        release()


class _Gunicorn(BaseApplication):
    def __init__(self, service: str, options: dict[str, Any]) -> None:
        self.service = service
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return build_wsgi(self.service)


def serve(service: str, bind: str, workers: int) -> None:
    """Threaded workers: they keep HTTP connections alive, so the gateway's connection pool
    to each service is reused instead of paying a TCP connect and accept per request (sync
    workers close after every response), and a gateway worker waiting on an upstream does not
    hold up the other requests it could serve."""
    threads = env_int("ECOURT_THREADS", 4, minimum=1)
    # the most connections one worker holds (gunicorn's default 1,000); beyond it new clients
    # wait in the listen backlog or go to a sibling worker
    connections = env_int("ECOURT_WORKER_CONNECTIONS", 1000, minimum=1)
    # The gateway forwards on an event loop (gateway.edge); its threads run only its own pages.
    worker = ("gateway.worker.EdgeWorker" if service == "gateway"
              else "ecourt.service_worker.ServiceWorker")
    _Gunicorn(service, {"bind": bind, "workers": workers, "child_exit": _child_exit,
                        "worker_class": worker, "threads": threads,
                        "worker_connections": connections,
                        "accesslog": None, "timeout": 30, "graceful_timeout": 20,
                        "keepalive": 5}).run()
