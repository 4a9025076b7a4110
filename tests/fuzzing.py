"""S7 (``../shared/RELIABILITY.md``): schemathesis against every service's published OpenAPI.

The two tiers run from two test modules, ``tests/test_api_fuzz.py`` (embedded) and
``tests/test_api_fuzz_postgres.py`` (PostgreSQL + RabbitMQ), so that ``make test``'s parallel
workers (pytest-xdist, one module per worker at a time) can take one each.

Each service's committed spec (``contracts/openapi/<service>.json``, kept equal to the code by
``test_contracts.py``) drives schemathesis's engine against the suite's gateway, so the
requests take the path a client's would: token check, rate limit, routing, the service. Both
tiers: PostgreSQL refuses what SQLite lets through (a string longer than its column, say).
It runs once per caller — nobody, a party, and three kinds of court staff — because most
routes answer a wrong caller with 401/403 before they look at the body.

Pass figure: no server error and no answer that breaks the spec (status code, content type,
headers, body schema), plus schemathesis's checks that a malformed request is refused and that
an operation's auth is enforced. One check is off: ``positive_data_acceptance`` expects every
request that fits the schema to be accepted, but the domain refuses some by rules a JSON Schema
cannot state (an ID number's check digit and birth date, a captcha's answer, an SMS code, a
case in another court) — with a documented 4xx problem, which the checks above still verify.

``ignored_auth`` is off as well: its probes (the request again without the token, then with
a wrong one) cannot reach an in-process WSGI app in schemathesis 4.32.5 (the probe hands the
network transport's ``max_redirects`` to werkzeug and errors). What it would check — every
operation the document marks with a security scheme refuses a caller without the token with
401, and a caller of another role with 403 — is ``tests/test_api_docs.py``, run on every
protected operation of every service.

Without a token, ``unsupported_method`` is off too: the gateway decides the token before the
method (the public routes are method-and-path pairs), so an anonymous ``TRACE`` gets 401, not
405 — nothing about a protected resource, not even its methods, is told to a caller who has
not authenticated. With a token, every undeclared method must get 405.

The cases are drawn from a fixed seed, so every run (and CI) sends the same requests; set
``ECOURT_FUZZ_SEED`` to another number to explore further, and keep the seed of a failure to
replay it. No example database is written.

Operations under ``/internal/`` are for services only; the gateway answers them 404 by design
(``gateway.routing.is_internal``) and ``test_routing`` covers that.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis import engine
from schemathesis.config import SchemathesisConfig
from werkzeug.test import Client

from ecourt import registry
from ecourt.embedded import Suite
from gateway.ratelimit import MemoryRateLimiter
from tests.harness import Court, person

SPECS = Path(__file__).resolve().parent.parent / "contracts" / "openapi"
#: examples per operation and phase: enough to reach every documented answer of a route
MAX_EXAMPLES = 5
SEED = int(os.environ.get("ECOURT_FUZZ_SEED", "20261202"))
CALLERS = ("nobody", "party", "court_admin", "specialist", "judge")


def tokens_for(suite: Suite) -> dict[str, str | None]:
    """A token for each caller of ``CALLERS`` (None: nobody), made through ``suite``."""
    # every anonymous case comes from one address: with the default 600 a minute the later
    # services' cases would meet 429 where the checks expect the route's own answer (a
    # missing token must be 401). The limiter still runs on every request.
    suite.gateway.rate_limiter = MemoryRateLimiter(1_000_000, 60)
    http = Client(suite.gateway)
    court = Court(suite, http, "粤01", "广州市中级人民法院")
    _, party = person(http, "张三")
    return {"nobody": None, "party": party, "court_admin": court.admin,
            "specialist": court.token("specialist"), "judge": court.token("judge")}


def _schema(service: str, app: Any, token: str | None, *, idempotency_key: bool) -> Any:
    spec = json.loads((SPECS / f"{service}.json").read_text(encoding="utf-8"))
    spec["servers"] = [{"url": f"/api/{service}"}]
    spec["paths"] = {path: item for path, item in spec["paths"].items()
                     if not path.startswith("/internal/")}
    if not idempotency_key:
        _without_idempotency_key(spec)
    config: dict[str, Any] = {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        "checks": {"positive_data_acceptance": {"enabled": False},
                   "ignored_auth": {"enabled": False}},
    }
    if token is not None:
        config["headers"] = {"Authorization": f"Bearer {token}"}
    else:
        config["checks"]["unsupported_method"] = {"enabled": False}
    schema = schemathesis.openapi.from_dict(spec, config=SchemathesisConfig.from_dict(config))
    schema.app = app
    return schema


def _without_idempotency_key(spec: dict[str, Any]) -> None:
    """Leave the kit's ``Idempotency-Key`` header out of the generated requests. The embedded
    tier fuzzes it (it found a 405 keeping its key); on PostgreSQL it would only repeat that
    tier's cases — the header is checked before any column sees it — for a third of the run's
    time again."""
    for item in spec["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "parameters" in operation:
                operation["parameters"] = [p for p in operation["parameters"]
                                           if p.get("name") != "Idempotency-Key"]


def _failures(schema: Any) -> tuple[list[str], int]:
    """Every failed check as one readable line, and how many checks ran."""
    failures: list[str] = []
    ran = 0
    for event in engine.from_schema(schema).execute():
        recorder = getattr(event, "recorder", None)
        if type(event).__name__ != "ScenarioFinished" or recorder is None:
            continue
        for case_id, checks in recorder.checks.items():
            for check in checks:
                ran += 1
                if check.status.name == "SUCCESS":
                    continue
                node = recorder.cases.get(case_id)
                where = node.value.operation.label if node is not None else case_id
                info = check.failure_info
                title = str(info.failure).splitlines()[0] if info is not None else ""
                sample = info.code_sample if info is not None else ""
                failures.append(f"{check.name} on {where}: {title}\n    {sample}")
        for error in getattr(event, "errors", None) or []:
            failures.append(f"engine error: {error}")
    return sorted(set(failures)), ran


def check_contract(suite: Suite, token: str | None, service: str, caller: str) -> None:
    """Run the fuzz of ``service`` as ``caller`` against ``suite``'s gateway and fail on any
    failed check; the kit's ``Idempotency-Key`` is fuzzed on the embedded tier only."""
    schema = _schema(service, suite.gateway, token,
                     idempotency_key=suite.broker_url.startswith("memory"))
    failures, ran = _failures(schema)
    assert not failures, f"{service} as {caller} (seed {SEED}):\n" + "\n".join(failures)
    operations = list(schema.get_all_operations())
    if operations:  # a service with routes was really exercised
        assert ran >= len(operations), (service, caller, ran)


def contract_tests(tier: str) -> tuple[Any, Any]:
    """The ``tokens`` fixture and the test of a module that fuzzes the suite of fixture
    ``tier`` (``embedded`` or ``real``): every API service as every caller."""

    @pytest.fixture(scope="module")
    def tokens(request: pytest.FixtureRequest) -> dict[str, str | None]:
        return tokens_for(request.getfixturevalue(tier))

    @pytest.mark.parametrize("caller", CALLERS)
    @pytest.mark.parametrize("service", registry.API_SERVICES)
    def test_the_service_keeps_its_published_contract(
            request: pytest.FixtureRequest, tokens: dict[str, str | None], service: str,
            caller: str) -> None:
        check_contract(request.getfixturevalue(tier), tokens[caller], service, caller)

    return tokens, test_the_service_keeps_its_published_contract
