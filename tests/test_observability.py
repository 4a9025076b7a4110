"""Logs are JSON lines with the request id and no personal data; /metrics stays correct with
several gunicorn workers (prometheus-client multiprocess mode); every route declares access."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from flask.views import MethodView
from flask_smorest import Blueprint

from servicekit import logs
from servicekit.testing import free_port, wait_for
from servicekit.web import ServiceSpec, create_service_app


def _healthz_count(text: str) -> float:
    pattern = re.compile(r'^http_requests_total\{([^}]*)\} ([0-9.e+]+)$', re.M)
    return sum(float(v) for labels, v in pattern.findall(text)
               if 'route="/healthz"' in labels and 'service="delivery"' in labels)


def test_metrics_add_up_across_gunicorn_workers(tmp_path: Path) -> None:
    port = free_port()
    prom = tmp_path / "prom"
    prom.mkdir()
    env = {**os.environ, "ECOURT_DATA_DIR": str(tmp_path),
           "PROMETHEUS_MULTIPROC_DIR": str(prom),
           "DELIVERY_DATABASE_URL": f"sqlite:///{tmp_path / 'delivery.db'}"}
    proc = subprocess.Popen([sys.executable, "-m", "ecourt.cli", "serve", "delivery",
                             "--workers", "3", "--bind", f"127.0.0.1:{port}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return requests.get(base + "/readyz", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        wait_for(up, timeout=60, message="gunicorn to serve")
        before = _healthz_count(requests.get(base + "/metrics", timeout=5).text)
        for _ in range(90):  # a new connection each time, so the workers share the work
            assert requests.get(base + "/healthz", timeout=5,
                                headers={"Connection": "close"}).status_code == 200
        after = _healthz_count(requests.get(base + "/metrics", timeout=5).text)
        assert after - before == 90
        assert len(list(prom.glob("counter_*.db"))) >= 2, "only one worker wrote metrics"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_log_lines_are_json_with_request_id_and_masked_personal_data(embedded) -> None:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    logs.configure("identity", stream=stream)
    try:
        app = embedded.apps["identity"]

        @app.get("/__log_probe")
        def _probe():  # type: ignore[no-untyped-def]
            logging.getLogger("probe").warning("calling 13800138000 about 44010619900101001X")
            return {}
        _probe._ecourt_access = __import__("servicekit.access").access.Access("public")
        app.test_client().get("/__log_probe", headers={"X-Request-ID": "req-123"})
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    probe = next(line for line in lines if line["logger"] == "probe")
    assert probe["request_id"] == "req-123"
    assert "13800138000" not in probe["message"] and "138****8000" in probe["message"]
    assert "44010619900101001X" not in probe["message"]
    assert probe["level"] == "WARNING" and probe["service"] == "identity"


def test_a_route_without_an_access_rule_refuses_to_start(embedded) -> None:  # type: ignore[no-untyped-def]
    blp = Blueprint("careless", __name__)

    @blp.route("/oops")
    class Oops(MethodView):
        def get(self) -> dict[str, str]:
            return {}

    spec = ServiceSpec("careless", "t", "t", [blp])
    with pytest.raises(RuntimeError, match="declares no access rule"):
        create_service_app(spec, embedded.runtimes["filing"])


def test_a_method_a_route_does_not_take_is_405_with_allow(embedded) -> None:  # type: ignore[no-untyped-def]
    resp = embedded.apps["identity"].test_client().post("/healthz")
    assert resp.status_code == 405
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert resp.get_json(force=True)["type"].endswith("/method-not-allowed")
    assert {m.strip() for m in resp.headers["Allow"].split(",")} >= {"GET", "HEAD"}


def test_every_route_of_every_service_declares_access(embedded) -> None:  # type: ignore[no-untyped-def]
    from servicekit.web import check_every_route_declares_access

    for app in embedded.apps.values():
        check_every_route_declares_access(app)  # raises if one does not


def test_readyz_reports_an_unreachable_broker(tmp_path: Path) -> None:
    from ecourt import registry
    from ecourt.runtime import make_runtime
    from servicekit.config import Settings

    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there now
    settings = Settings.from_env("filing", database_url=f"sqlite:///{tmp_path / 'f.db'}",
                                 broker_url=f"amqp://guest:guest@127.0.0.1:{port}//")
    rt = make_runtime(registry.get("filing"), settings, None)
    resp = registry.get("filing").build_app(rt).test_client().get("/readyz")  # type: ignore[misc]
    assert resp.status_code == 503
    assert resp.content_type == "application/problem+json"
    body = resp.get_json()
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"].startswith("failed")


def test_a_service_answers_503_when_it_cannot_fetch_the_signing_keys(embedded) -> None:  # type: ignore[no-untyped-def]
    """An unreachable JWKS is the platform's fault, not the client's: 503 with Retry-After."""
    import dataclasses

    from werkzeug.test import Client

    from ecourt import registry
    from servicekit.tokens import SigningKey, TokenVerifier

    def down() -> dict:
        raise ConnectionError("identity unreachable")

    rt = dataclasses.replace(embedded.runtimes["delivery"], verifier=TokenVerifier(down))
    app = registry.get("delivery").build_app(rt)
    token = SigningKey.generate().sign({"sub": "acct-1", "roles": ["party"]})
    resp = Client(app).get("/inbox", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert resp.get_json()["type"].endswith("/keys-unavailable")


@pytest.mark.parametrize("bad", ["abc\n", "abc\r\n"])
def test_a_request_id_ending_in_a_line_break_is_replaced_by_a_service(  # type: ignore[no-untyped-def]
        embedded, bad: str) -> None:
    """Sent to a service directly (a replica behind another proxy, or a worker's own call):
    ``$`` matched before the final newline, the id was kept and put back into the answer's
    headers, which werkzeug refuses. The gateway's own check was fixed the same way (5fe7c48)."""
    client = embedded.apps["documents"].test_client()
    for path, status in (("/healthz", 200), ("/no-such-route", 404)):
        # werkzeug's client would refuse the header: set it in the WSGI environ itself
        resp = client.get(path, environ_overrides={"HTTP_X_REQUEST_ID": bad})
        assert resp.status_code == status, resp.get_data(as_text=True)
        rid = resp.headers["X-Request-ID"]
        assert re.fullmatch(r"[a-z2-7]{16}-[0-9a-f]+", rid), rid  # context.new_id
        if status == 404:
            assert resp.get_json()["request_id"] == rid
