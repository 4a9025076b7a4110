"""The distributed tier as separate processes, started with the CLI as ``docker-compose.yml``
starts them: ``ecourt migrate``, ``ecourt serve identity``, ``ecourt relay identity``,
``ecourt consume delivery`` and ``ecourt serve gateway``, on PostgreSQL and RabbitMQ (a
database set and a vhost of this test's). An account registered through the gateway reaches
delivery's consumer, whose inbox records it; ``ecourt dlq list`` finds no dead letter; and
every process stops cleanly on TERM, as ``docker compose stop`` sends it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, select

from ecourt import registry
from servicekit.tables import inbox, outbox
from servicekit.testing import answers_ok, free_port, pg_databases, rabbit_vhost, unique, wait_for
from tests.reliability.helpers import person

pytestmark = pytest.mark.real

REGISTERED = "identity.account.registered"


class Processes:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ecourt.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)

    def start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.running[name] = subprocess.Popen([sys.executable, "-m", "ecourt.cli", *args],
                                              env=self.env, stdout=log,
                                              stderr=subprocess.STDOUT)
        log.close()

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> dict[str, int]:
        for proc in self.running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self.running.items():
            try:
                codes[name] = proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes


@pytest.fixture
def processes(tmp_path: Path, infrastructure: None) -> Iterator[tuple[Processes, dict[str, str]]]:
    with pg_databases(list(registry.SERVICES), prefix="ecourt_proc") as urls, \
            rabbit_vhost("ecourt_proc") as broker:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ECOURT_", "GATEWAY_", "PROMETHEUS_"))
               and not k.endswith("_DATABASE_URL")}
        env.update({f"{name.upper()}_DATABASE_URL": url for name, url in urls.items()})
        env.update(ECOURT_BROKER_URL=broker, ECOURT_EXCHANGE=unique("proc.events"),
                   ECOURT_SERVICE_SECRET=unique("secret"), ECOURT_DATA_DIR=str(tmp_path / "d"),
                   ECOURT_LOG_LEVEL="WARNING", XDG_RUNTIME_DIR=str(tmp_path),
                   PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"))
        (tmp_path / "prom").mkdir()
        procs = Processes(env, tmp_path)
        try:
            yield procs, urls
        finally:
            procs.stop_all()



def test_an_account_registered_through_the_gateway_reaches_delivery_across_processes(
        processes) -> None:  # type: ignore[no-untyped-def]
    procs, urls = processes
    for service in ("identity", "delivery"):
        done = procs.cli("migrate", service)
        assert done.returncode == 0, done.stderr

    api, gw = free_port(), free_port()
    procs.env["GATEWAY_UPSTREAM_IDENTITY"] = f"http://127.0.0.1:{api}"
    procs.env["ECOURT_JWKS_URL"] = f"http://127.0.0.1:{api}/.well-known/jwks.json"
    procs.start("identity-api", "serve", "identity", "--bind", f"127.0.0.1:{api}",
                "--workers", "1")
    procs.start("identity-relay", "relay", "identity")
    procs.start("delivery-consumer", "consume", "delivery")
    procs.start("gateway", "serve", "gateway", "--bind", f"127.0.0.1:{gw}", "--workers", "1")
    wait_for(lambda: answers_ok(f"http://127.0.0.1:{gw}/api/identity/readyz"), timeout=90,
             message="identity behind the gateway")
    # the consumer declares its queue when it starts; until then the relay's mandatory
    # publishes come back unroutable and stay in the outbox, so order does not matter here
    resp = requests.post(f"http://127.0.0.1:{gw}/api/identity/accounts", json=person(),
                         timeout=10)
    assert resp.status_code == 201, resp.text
    account = resp.json()["id"]

    identity_db, delivery_db = create_engine(urls["identity"]), create_engine(urls["delivery"])
    try:
        with identity_db.connect() as conn:
            [event_id] = [row.event_id for row in conn.execute(
                select(outbox.c.event_id, outbox.c.body).where(outbox.c.type == REGISTERED))
                if json.loads(row.body)["subject"] == account]

        def delivered() -> bool:
            with delivery_db.connect() as conn:
                return event_id in set(conn.scalars(select(inbox.c.event_id).where(
                    inbox.c.consumer == "delivery", inbox.c.type == REGISTERED)))

        wait_for(delivered, timeout=60, interval=0.2,
                 message="delivery's consumer to record the registration "
                         + procs.log("identity-relay")[-500:]
                         + procs.log("delivery-consumer")[-500:])
    finally:
        identity_db.dispose()
        delivery_db.dispose()

    listed = procs.cli("dlq", "list", "delivery")
    assert listed.returncode == 0, listed.stderr
    assert "0 dead letter(s)" in listed.stderr + listed.stdout

    codes = procs.stop_all()
    assert codes == dict.fromkeys(codes, 0), {n: procs.log(n)[-800:] for n in codes}
