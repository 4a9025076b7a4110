"""The deployment files, checked without a Docker engine, a cluster or the network.

``docker-compose.yml``, ``deploy/`` (Kubernetes, Prometheus, PostgreSQL init, secrets) and the
``Dockerfile`` are parsed here and held to what the code expects: every ``ecourt ...`` command
line is parsed by the real CLI parser, every database URL names a database the init script
creates, every upstream and scrape target names a process that exists, no secret is written in
clear. A drift between the code and its deployment fails here, not on the first ``docker compose
up``. Nothing outside the repository is read; the compose schema below is our own, small one.
"""

from __future__ import annotations

import argparse
import fnmatch
import inspect
import json
import re
import shlex
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from gateway.edge_service import body_budget_bytes

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
INIT_SQL = DEPLOY / "postgres" / "init-databases.sql"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
SECRETS_DIR = DEPLOY / "secrets"

#: the services with an HTTP API, an outbox relay and an event consumer
SERVICES = ("identity", "filing", "matters", "documents", "delivery", "bankruptcy")
#: services that also run a deadline scheduler process (`ecourt scheduler SERVICE`)
SCHEDULED = ("matters",)
#: consumer-only service with its own database
NOTIFIER = "notifier"
INFRA = ("postgres", "rabbitmq", "redis")
API_PORT, GATEWAY_PORT, METRICS_PORT = 8000, 8080, 9100

#: The one credential allowed in clear: the compose-internal PostgreSQL role and RabbitMQ user
#: ``ecourt``/``ecourt`` for local development. Allowed only towards infrastructure containers
#: that publish no port (checked below), so nothing outside the compose network can use it.
DEV_PASSWORD = "ecourt"
DEV_PASSWORD_KEYS = {("rabbitmq", "RABBITMQ_DEFAULT_PASS")}

SECRET_NAME = re.compile(
    r"SECRET|PASSWORD|PASSWD|_PASS$|TOKEN|API_KEY|PRIVATE|SIGNING_KEY|SMS_KEY", re.IGNORECASE)
INTERPOLATION = re.compile(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$")

#: The modules that call servicekit.sealed.seal/unseal, and so the only processes that may hold
#: the SMS key (ECOURT_SMS_KEY): identity's sign-in codes run in its API, delivery's handlers
#: (and the use cases they call) in its consumer, the notifier's sending in the notifier.
SEALING_MODULES = {"services/identity/signin_codes.py", "services/delivery/usecases.py",
                   "services/delivery/handlers.py", "services/notifier/sending.py"}
SMS_KEY_COMPOSE = {"identity-api", "delivery-consumer", "notifier"}
#: (Deployment, container) in deploy/k8s; init containers (migrations) never get it
SMS_KEY_K8S = {("identity-api", "api"), ("delivery-consumer", "consumer"),
               ("notifier", "consumer")}
SMS_KEY_SECRET_COMPOSE, SMS_KEY_SECRET_K8S = "sms_key", "ecourt-sms-key"


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    from ecourt import cli

    return cli.build_parser()


@pytest.fixture(scope="module")
def init_sql() -> tuple[set[str], set[str]]:
    """(roles, databases) created by the PostgreSQL init script."""
    text = re.sub(r"--[^\n]*", "", INIT_SQL.read_text(encoding="utf-8"))
    roles = set(re.findall(r"CREATE\s+(?:ROLE|USER)\s+(\w+)", text, re.IGNORECASE))
    databases = set(re.findall(r"CREATE\s+DATABASE\s+(\w+)", text, re.IGNORECASE))
    return roles, databases


@pytest.fixture(scope="module")
def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def ecourt_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Compose services that run the suite's own image (entrypoint ``ecourt``)."""
    return {name: svc for name, svc in services.items() if "build" in svc}


def parse_cli(parser: argparse.ArgumentParser, argv: list[str], where: str) -> argparse.Namespace:
    assert all(isinstance(a, str) for a in argv), f"{where}: every argument must be a string"
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: `ecourt {shlex.join(argv)}` is rejected by ecourt.cli "
                    f"(exit {exc.code})")


def option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def bind_port(argv: list[str]) -> int:
    bind = option(argv, "--bind")
    assert bind, f"`ecourt {shlex.join(argv)}` has no --bind"
    return int(bind.rsplit(":", 1)[1])


# ------------------------------------------------------------------------------------------------
# docker-compose.yml: shape
# ------------------------------------------------------------------------------------------------

_STR = {"type": "string"}
_STRINGS = {"type": "array", "items": _STR}
_DURATION = {"type": "string", "pattern": r"^(\d+(\.\d+)?(us|ms|s|m|h))+$"}

#: Our own, deliberately strict subset of the Compose Specification: only what this suite uses,
#: with no unknown keys (a typo such as ``depend_on`` fails), list-form commands only (no shell
#: parsing surprises) and string-only environment values (no YAML 1.1 ``yes`` -> true).
COMPOSE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["services"],
    "additionalProperties": False,
    "patternProperties": {"^x-": {}},
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"},
        "services": {"type": "object", "minProperties": 1,
                     "propertyNames": {"pattern": "^[a-z0-9][a-z0-9_-]*$"},
                     "additionalProperties": {"$ref": "#/$defs/service"}},
        "volumes": {"type": "object", "additionalProperties": {"type": ["object", "null"]}},
        "secrets": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["file"], "additionalProperties": False,
            "properties": {"file": _STR}}},
    },
    "$defs": {
        "service": {
            "type": "object",
            "anyOf": [{"required": ["image"]}, {"required": ["build"]}],
            "additionalProperties": False,
            "properties": {
                "image": _STR,
                "build": {"type": "object", "required": ["context"],
                          "properties": {"context": _STR, "dockerfile": _STR,
                                         "target": _STR}, "additionalProperties": False},
                "command": {"type": "array", "items": _STR, "minItems": 1},
                "entrypoint": {"type": "array", "items": _STR},
                "environment": {"type": "object",
                                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                "additionalProperties": {"type": "string"}},
                "env_file": _STRINGS,
                "depends_on": {"type": "object", "additionalProperties": {
                    "type": "object", "required": ["condition"], "additionalProperties": False,
                    "properties": {"condition": {"enum": [
                        "service_started", "service_healthy",
                        "service_completed_successfully"]}, "restart": {"type": "boolean"}}}},
                "healthcheck": {"type": "object", "additionalProperties": False, "properties": {
                    "test": {"type": "array", "minItems": 2, "items": _STR,
                             "prefixItems": [{"enum": ["CMD", "CMD-SHELL"]}]},
                    "interval": _DURATION, "timeout": _DURATION, "start_period": _DURATION,
                    "retries": {"type": "integer", "minimum": 1},
                    "disable": {"type": "boolean"}}},
                "restart": {"enum": ["no", "always", "on-failure", "unless-stopped"]},
                "ports": {"type": "array", "items": {
                    "type": "string",
                    "pattern": r"^((\d{1,3}\.){3}\d{1,3}:)?\d+:\d+(/(tcp|udp))?$"}},
                "volumes": _STRINGS,
                "secrets": _STRINGS,
                "hostname": _STR,
                "init": {"type": "boolean"},
                "stop_grace_period": _DURATION,
                "logging": {"type": "object"},
            },
        },
    },
}


def test_compose_file_matches_our_schema(compose: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(COMPOSE_SCHEMA)
    errors = sorted(jsonschema.Draft202012Validator(COMPOSE_SCHEMA).iter_errors(compose),
                    key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_compose_has_every_process_of_the_suite(services: dict[str, dict[str, Any]]) -> None:
    expected = {*INFRA, "gateway", NOTIFIER, f"{NOTIFIER}-migrate", "prometheus"}
    for svc in SERVICES:
        expected |= {f"{svc}-api", f"{svc}-relay", f"{svc}-consumer", f"{svc}-migrate"}
    assert expected <= set(services), f"missing: {sorted(expected - set(services))}"


def test_suite_services_share_one_image_with_a_restart_policy(
        services: dict[str, dict[str, Any]]) -> None:
    own = ecourt_services(services)
    assert len({svc["image"] for svc in own.values()}) == 1, "one image for every process"
    for name, svc in own.items():
        assert svc["build"]["context"] == ".", name
        assert "entrypoint" not in svc, f"{name}: the image's ENTRYPOINT is `ecourt`"
        if name.endswith("-migrate"):
            assert svc["restart"] == "no", f"{name}: a one-shot step must not restart"
        else:
            assert svc.get("restart") in ("always", "unless-stopped"), name
    for name in (*INFRA, "prometheus"):
        assert services[name].get("restart") in ("always", "unless-stopped"), name


# ------------------------------------------------------------------------------------------------
# docker-compose.yml: commands against the real CLI
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("svc", SERVICES)
def test_each_service_runs_api_relay_consumer_and_migration(
        services: dict[str, dict[str, Any]], parser: argparse.ArgumentParser, svc: str) -> None:
    api = services[f"{svc}-api"]["command"]
    args = parse_cli(parser, api, f"{svc}-api")
    assert (args.command, args.service) == ("serve", svc)
    assert bind_port(api) == API_PORT and option(api, "--bind").startswith("0.0.0.0:")
    assert args.workers >= 1
    # migrations are the one-shot step below, not each replica's start-up
    assert args.no_migrate, f"{svc}-api: the {svc}-migrate step migrates; pass --no-migrate"

    for process, sub in (("relay", "relay"), ("consumer", "consume")):
        argv = services[f"{svc}-{process}"]["command"]
        args = parse_cli(parser, argv, f"{svc}-{process}")
        assert (args.command, args.service) == (sub, svc)
        assert args.metrics_port == METRICS_PORT, f"{svc}-{process}: --metrics-port"

    args = parse_cli(parser, services[f"{svc}-migrate"]["command"], f"{svc}-migrate")
    assert (args.command, args.service) == ("migrate", svc)


def test_notifier_and_gateway_commands(services: dict[str, dict[str, Any]],
                                       parser: argparse.ArgumentParser) -> None:
    args = parse_cli(parser, services[NOTIFIER]["command"], NOTIFIER)
    assert (args.command, args.service, args.metrics_port) == ("consume", NOTIFIER, METRICS_PORT)
    args = parse_cli(parser, services[f"{NOTIFIER}-migrate"]["command"], "notifier-migrate")
    assert (args.command, args.service) == ("migrate", NOTIFIER)

    gateway = services["gateway"]["command"]
    args = parse_cli(parser, gateway, "gateway")
    assert (args.command, args.service) == ("serve", "gateway")
    assert bind_port(gateway) == GATEWAY_PORT
    assert f"{GATEWAY_PORT}:{GATEWAY_PORT}" in services["gateway"]["ports"]


def test_every_ecourt_command_names_a_known_service(services: dict[str, dict[str, Any]],
                                                    parser: argparse.ArgumentParser) -> None:
    from ecourt import registry

    for name, svc in ecourt_services(services).items():
        args = parse_cli(parser, svc["command"], name)
        assert args.command in ("serve", "relay", "consume", "migrate", "scheduler"), name
        known = set(registry.SERVICES) | ({"gateway"} if args.command == "serve" else set())
        assert args.service in known, f"{name}: unknown service {args.service!r}"
        if args.command == "serve" and args.service != "gateway":
            assert args.service in registry.API_SERVICES, f"{name}: {args.service} has no API"


def test_compose_covers_the_registry(services: dict[str, dict[str, Any]]) -> None:
    """A service added to ecourt.registry must be added to the deployment too."""
    from ecourt import registry

    assert set(registry.SERVICES) == {*SERVICES, NOTIFIER}
    assert set(registry.API_SERVICES) == set(SERVICES)
    for name in registry.SERVICES:
        assert f"{name}-migrate" in services, name


# ------------------------------------------------------------------------------------------------
# docker-compose.yml: start order and health
# ------------------------------------------------------------------------------------------------


def test_depends_on_names_existing_services(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for dep, spec in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            assert dep != name, name
            if spec["condition"] == "service_healthy":
                check = services[dep].get("healthcheck", {})
                has_own = bool(check.get("test")) and not check.get("disable")
                from_image = "build" in services[dep] and not check.get("disable")
                assert has_own or from_image, f"{name} waits for {dep} to be healthy: it has " \
                                              "no healthcheck"
            if spec["condition"] == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} must be a one-shot"


def test_infrastructure_has_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in INFRA:
        test = services[name].get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
    # pg_isready over TCP: the image's init phase listens on the unix socket only
    assert "127.0.0.1" in services["postgres"]["healthcheck"]["test"]


def test_workers_report_health_on_their_metrics_port(services: dict[str, dict[str, Any]]) -> None:
    """Relays and consumers have no /healthz on 8000 (the image's default check)."""
    for name, svc in ecourt_services(services).items():
        command = svc["command"]
        if command[0] in ("relay", "consume"):
            test = " ".join(svc["healthcheck"]["test"])
            assert f":{METRICS_PORT}/" in test, name
        elif command[0] == "migrate":
            assert svc["healthcheck"] == {"disable": True}, name
    gateway_env = services["gateway"]["environment"]
    assert gateway_env["ECOURT_HEALTHCHECK_URL"].endswith(f":{GATEWAY_PORT}/healthz")


def test_every_process_waits_for_infrastructure_and_its_migration(
        services: dict[str, dict[str, Any]]) -> None:
    for svc in (*SERVICES, NOTIFIER):
        migrate = services[f"{svc}-migrate"]
        assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
        processes = ([NOTIFIER] if svc == NOTIFIER
                     else [f"{svc}-api", f"{svc}-relay", f"{svc}-consumer"])
        for name in processes:
            deps = services[name]["depends_on"]
            for infra in ("postgres", "rabbitmq"):
                assert deps[infra]["condition"] == "service_healthy", f"{name} -> {infra}"
            assert deps[f"{svc}-migrate"]["condition"] == "service_completed_successfully", name
    gateway_deps = services["gateway"]["depends_on"]
    assert gateway_deps["redis"]["condition"] == "service_healthy"
    assert gateway_deps["identity-api"]["condition"] == "service_healthy"  # serves the JWKS


# ------------------------------------------------------------------------------------------------
# docker-compose.yml: databases, broker, upstreams
# ------------------------------------------------------------------------------------------------


def test_database_urls_name_databases_of_the_init_script(
        services: dict[str, dict[str, Any]], init_sql: tuple[set[str], set[str]]) -> None:
    roles, databases = init_sql
    assert databases == {*SERVICES, NOTIFIER}, "one database per service"
    used = set()
    for name, svc in services.items():
        for key, value in svc.get("environment", {}).items():
            if not key.endswith("_DATABASE_URL"):
                continue
            url = urlsplit(value)
            owner = key.removesuffix("_DATABASE_URL").lower()
            assert url.scheme == "postgresql+psycopg", f"{name}: {key}"
            assert url.hostname in services and url.hostname == "postgres", f"{name}: {key}"
            assert url.port == 5432, f"{name}: {key}"
            assert url.username in roles, f"{name}: role {url.username!r} is not created"
            db = url.path.lstrip("/")
            assert db in databases, f"{name}: database {db!r} is not created by the init SQL"
            assert db == owner, f"{name}: {key} points at another service's database {db!r}"
            command = svc.get("command", [])
            assert command[1:2] == [owner], f"{name} runs {command} but gets {key}"
            used.add(db)
        # a process gets its own service's database and nobody else's
        db_keys = [k for k in svc.get("environment", {}) if k.endswith("_DATABASE_URL")]
        assert len(db_keys) <= 1, f"{name} sees several databases: {db_keys}"
    assert used == databases, f"databases nobody uses: {sorted(databases - used)}"


def test_postgres_runs_the_init_script(services: dict[str, dict[str, Any]]) -> None:
    mounts = services["postgres"]["volumes"]
    assert any(m.startswith("./deploy/postgres/init-databases.sql:/docker-entrypoint-initdb.d/")
               for m in mounts), mounts


def test_every_process_of_a_service_talks_to_the_broker(
        services: dict[str, dict[str, Any]]) -> None:
    rabbit = services["rabbitmq"]
    assert rabbit["image"].startswith("rabbitmq:3.13-management")
    user, vhost = rabbit["environment"]["RABBITMQ_DEFAULT_USER"], \
        rabbit["environment"]["RABBITMQ_DEFAULT_VHOST"]
    for name, svc in ecourt_services(services).items():
        env = svc["environment"]
        if name == "gateway" or name.endswith("-migrate"):
            continue
        url = urlsplit(env["ECOURT_BROKER_URL"])
        assert url.scheme == "amqp" and url.hostname == "rabbitmq" and url.port == 5672, name
        assert url.username == user != "guest", f"{name}: use the compose user, not guest"
        assert url.path[1:] == vhost, f"{name}: vhost {url.path[1:]!r} != {vhost!r}"
        assert env["ECOURT_EXCHANGE"] == "ecourt.events", name
        jwks = urlsplit(env["ECOURT_JWKS_URL"])
        assert jwks.hostname == "identity-api" and jwks.path == "/.well-known/jwks.json", name


def test_gateway_has_an_upstream_for_every_api(services: dict[str, dict[str, Any]],
                                               parser: argparse.ArgumentParser) -> None:
    env = services["gateway"]["environment"]
    upstreams = {k.removeprefix("GATEWAY_UPSTREAM_").lower(): v for k, v in env.items()
                 if k.startswith("GATEWAY_UPSTREAM_")}
    assert set(upstreams) == set(SERVICES)
    for svc, value in upstreams.items():
        url = urlsplit(value)
        assert url.scheme == "http" and url.hostname in services, f"{svc}: {value}"
        target = parse_cli(parser, services[url.hostname]["command"], url.hostname)
        assert (target.command, target.service) == ("serve", svc), f"{svc} -> {url.hostname}"
        assert url.port == bind_port(services[url.hostname]["command"]), value
    assert urlsplit(env["ECOURT_REDIS_URL"]).hostname == "redis"
    assert urlsplit(env["ECOURT_JWKS_URL"]).hostname == "identity-api"


def test_identity_signs_with_the_key_from_a_secret(compose: dict[str, Any],
                                                   services: dict[str, dict[str, Any]]) -> None:
    identity = services["identity-api"]
    path = identity["environment"]["IDENTITY_SIGNING_KEY_FILE"]
    assert path == "/run/secrets/identity_signing_key"
    assert "identity_signing_key" in identity["secrets"]
    assert "identity_signing_key" in compose["secrets"]


def test_only_identity_delivery_and_the_notifier_seal() -> None:
    """Who calls seal/unseal decides who gets the SMS key: a new caller must be added to
    SEALING_MODULES and given the key in compose and k8s (and the key's README)."""
    importing = {path.relative_to(ROOT).as_posix() for path in (ROOT / "services").rglob("*.py")
                 if "tests" not in path.parts
                 and re.search(r"^\s*from servicekit(\.sealed| import .*\bsealed\b)|"
                               r"^\s*import servicekit\.sealed",
                               path.read_text(encoding="utf-8"), re.MULTILINE)}
    assert importing == SEALING_MODULES


def _gets_sms_key_compose(svc: dict[str, Any]) -> bool:
    return (SMS_KEY_SECRET_COMPOSE in svc.get("secrets", [])
            or any(key.startswith("ECOURT_SMS_KEY") for key in svc.get("environment", {}))
            or any(f != "deploy/secrets/ecourt.env" for f in svc.get("env_file", [])))


def test_sms_key_goes_only_to_the_processes_that_seal_or_open(
        compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    assert compose["secrets"][SMS_KEY_SECRET_COMPOSE] == {"file": "deploy/secrets/sms_key"}
    holders = {name for name, svc in services.items() if _gets_sms_key_compose(svc)}
    assert holders == SMS_KEY_COMPOSE, "the SMS key goes to these processes and no other"
    for name in SMS_KEY_COMPOSE:
        svc = services[name]
        assert svc["environment"].get("ECOURT_SMS_KEY_FILE") == \
            f"/run/secrets/{SMS_KEY_SECRET_COMPOSE}", name
        assert SMS_KEY_SECRET_COMPOSE in svc["secrets"], name


def _shell_command(text: str, start: str) -> str:
    """The (backslash-continued) shell command in ``text`` that begins with ``start``."""
    lines = text[text.index(start):].splitlines()
    command = []
    for line in lines:
        command.append(line)
        if not line.rstrip().endswith("\\"):
            break
    return "\n".join(command)


def test_the_sms_key_is_not_in_the_secrets_every_service_gets() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "ECOURT_SMS_KEY" not in _shell_command(
        readme, "kubectl -n ecourt create secret generic ecourt-shared")
    assert "ECOURT_SMS_KEY" in _shell_command(
        readme, f"kubectl -n ecourt create secret generic {SMS_KEY_SECRET_K8S}")
    secrets_readme = (SECRETS_DIR / "README.md").read_text(encoding="utf-8")
    assert "ECOURT_SMS_KEY" not in _shell_command(secrets_readme, "printf 'ECOURT_SERVICE_SECRET")


# ------------------------------------------------------------------------------------------------
# Secrets: nothing in clear, everything generated is git-ignored
# ------------------------------------------------------------------------------------------------


def _published(svc: dict[str, Any]) -> bool:
    return bool(svc.get("ports"))


def test_no_literal_secrets_in_compose(compose: dict[str, Any],
                                       services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for key, value in svc.get("environment", {}).items():
            where = f"{name}: {key}"
            if SECRET_NAME.search(key):
                if key.endswith("_FILE") or key.endswith("__FILE"):
                    assert value.startswith("/run/secrets/"), where
                    assert value.rsplit("/", 1)[1] in svc.get("secrets", []), where
                    continue
                if (name, key) in DEV_PASSWORD_KEYS:
                    assert value == DEV_PASSWORD and not _published(svc), where
                    continue
                assert INTERPOLATION.match(value), f"{where} holds a literal secret"
            url = urlsplit(value) if "://" in value else None
            if url is not None and url.password is not None:
                assert url.password == DEV_PASSWORD, f"{where}: a password in a URL"
                assert url.hostname in INFRA and not _published(services[url.hostname]), \
                    f"{where}: dev credentials only towards unpublished infrastructure"
    # the service secret reaches the processes from the git-ignored env file, never inline
    for name, svc in ecourt_services(services).items():
        assert "ECOURT_SERVICE_SECRET" not in svc.get("environment", {}), name
        if name != "gateway":
            assert svc.get("env_file") == ["deploy/secrets/ecourt.env"], name
    for name, secret in compose["secrets"].items():
        assert secret["file"].startswith("deploy/secrets/"), name


def _ignored(patterns: list[str], name: str) -> bool:
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if fnmatch.fnmatch(name, pattern.lstrip("!")):
            ignored = not negated
    return ignored


def test_secret_files_are_git_ignored_and_documented(compose: dict[str, Any]) -> None:
    patterns = [line.strip() for line in (SECRETS_DIR / ".gitignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    readme = (SECRETS_DIR / "README.md").read_text(encoding="utf-8")
    files = [s["file"] for s in compose["secrets"].values()]
    files += [f for svc in compose["services"].values() for f in svc.get("env_file", [])]
    for file in set(files):
        name = Path(file).name
        assert _ignored(patterns, name), f"{file} is not git-ignored"
        assert name in readme, f"deploy/secrets/README.md does not say how to make {name}"
    assert not _ignored(patterns, "README.md") and not _ignored(patterns, ".gitignore")
    dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "deploy/secrets/" in dockerignore or "deploy/secrets" in dockerignore


def test_no_private_key_or_literal_secret_anywhere_in_deploy_files() -> None:
    files = [COMPOSE_FILE, DOCKERFILE, *DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml"),
             *DEPLOY.rglob("*.sql")]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "PRIVATE KEY-----" not in text, path
        assert not re.search(r"guest:guest@", text), f"{path}: RabbitMQ's guest user"
        for match in re.finditer(r"PASSWORD\s+'([^']*)'", text, re.IGNORECASE):
            assert match.group(1) == DEV_PASSWORD, f"{path}: literal password"


# ------------------------------------------------------------------------------------------------
# Prometheus
# ------------------------------------------------------------------------------------------------


def _scrape_targets(config: dict[str, Any]) -> set[tuple[str, int]]:
    targets = set()
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics", job["job_name"]
        for sd in job.get("dns_sd_configs", []):
            assert sd.get("type", "SRV") == "A" and "port" in sd, job["job_name"]
            targets |= {(name, int(sd["port"])) for name in sd["names"]}
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets.add((host, int(port)))
    return targets


def test_prometheus_scrapes_every_process(services: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    names = [job["job_name"] for job in config["scrape_configs"]]
    assert len(names) == len(set(names)), "job names must be unique"
    targets = _scrape_targets(config)
    expected = {("gateway", GATEWAY_PORT), (NOTIFIER, METRICS_PORT)}
    for svc in SERVICES:
        expected |= {(f"{svc}-api", API_PORT), (f"{svc}-relay", METRICS_PORT),
                     (f"{svc}-consumer", METRICS_PORT)}
    assert expected <= targets, f"not scraped: {sorted(expected - targets)}"
    for host, port in targets:
        if host in ("127.0.0.1", "localhost"):
            continue
        assert host in services, f"scrape target {host} is no compose service"
        command = services[host].get("command", [])
        if command and command[0] == "serve":
            assert port == bind_port(command), host
        elif command and command[0] in ("relay", "consume"):
            assert port == int(option(command, "--metrics-port") or 0), host
    mounts = services["prometheus"]["volumes"]
    assert any(m.startswith("./deploy/prometheus/prometheus.yml:") for m in mounts)


# ------------------------------------------------------------------------------------------------
# Alerting rules
# ------------------------------------------------------------------------------------------------

_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
             "gauge": ("",), "summary": ("", "_sum", "_count")}


def exported_metric_names(tmp_path: Path) -> set[str]:
    """The series the suite exports: the kit's metrics and matters' collectors, as their
    samples are named, and Prometheus's own ``up``."""
    from prometheus_client import REGISTRY

    import servicekit.metrics  # noqa: F401  (registers the kit's metrics)
    from ecourt import registry
    from servicekit import migrations
    from servicekit.db import Database
    from services.matters.escalation import OverdueCollector

    url = f"sqlite:///{tmp_path / 'matters.db'}"
    migrations.upgrade(registry.get("matters").migrations, url)
    db = Database(url)
    try:
        families = [*REGISTRY.collect(), *OverdueCollector(db).collect()]
    finally:
        db.dispose()
    return {"up"} | {family.name + suffix for family in families
                     for suffix in _SUFFIXES.get(family.type, ("",))}


def selectors(node: Any) -> Iterator[str]:
    """The metric names an expression reads (promql_parser's syntax tree)."""
    import promql_parser

    if isinstance(node, promql_parser.VectorSelector):
        yield node.name
        return
    for attr in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attr, None)
        if child is not None:
            yield from selectors(child)
    for arg in getattr(node, "args", None) or ():
        yield from selectors(arg)


def test_alert_rules_parse_name_exported_metrics_and_are_loaded(
        services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    import promql_parser

    rules = [rule for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
             for rule in group["rules"]]
    assert rules
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    exported = exported_metric_names(tmp_path)
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        read = set(selectors(promql_parser.parse(rule["expr"])))  # raises on a syntax error
        assert read and read <= exported, f"{rule['alert']} reads {sorted(read - exported)}"
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in \
        services["prometheus"]["volumes"]


Series = dict[str, list[tuple[dict[str, str], float]]]


def evaluate(node: Any, series: Series, at: datetime) -> Any:
    """The value of an alert's expression at ``at`` (UTC), over ``series``: a small evaluator
    of the PromQL the working-day alerts use (selectors, numbers, year(), month(), scalar(),
    sum by, comparisons and and/or with their label matching, as Prometheus does them), so
    an expression that parses but can never fire (a labelled vector compared with year()'s
    unlabelled one matches nothing) fails here. A vector is a list of (labels, value)."""
    import promql_parser as pp

    if isinstance(node, pp.VectorSelector):
        return [({**labels, "__name__": node.name}, value)
                for labels, value in series.get(node.name, [])]
    if isinstance(node, pp.NumberLiteral):
        return node.val
    if isinstance(node, pp.ParenExpr):
        return evaluate(node.expr, series, at)
    if isinstance(node, pp.Call):
        return _call(node.func.name, [evaluate(arg, series, at) for arg in node.args], at)
    if isinstance(node, pp.AggregateExpr) and str(node.op) == "sum":
        sums: dict[tuple[tuple[str, str], ...], float] = {}
        for labels, value in evaluate(node.expr, series, at):
            key = tuple((name, labels.get(name, "")) for name in node.modifier.labels)
            sums[key] = sums.get(key, 0.0) + value
        return [(dict(key), value) for key, value in sums.items()]
    if isinstance(node, pp.BinaryExpr):
        return _binary(str(node.op), evaluate(node.lhs, series, at),
                       evaluate(node.rhs, series, at), node.modifier)
    raise NotImplementedError(type(node).__name__)


def _call(name: str, args: list[Any], at: datetime) -> Any:
    if name in ("year", "month") and not args:
        return [({}, float(at.year if name == "year" else at.month))]
    if name == "scalar":
        return args[0][0][1] if len(args[0]) == 1 else float("nan")
    raise NotImplementedError(name)


_COMPARE = {"<": float.__lt__, ">": float.__gt__, "<=": float.__le__, ">=": float.__ge__,
            "==": float.__eq__, "!=": float.__ne__}


def _binary(op: str, lhs: Any, rhs: Any, modifier: Any) -> Any:
    matching = modifier.matching if modifier is not None else None

    def key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
        if matching is not None and str(matching.type).endswith("Include"):
            return tuple((name, labels.get(name, "")) for name in sorted(matching.labels))
        return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))

    if op in ("and", "or"):
        right = {key(labels) for labels, _ in rhs}
        if op == "and":
            return [(labels, value) for labels, value in lhs if key(labels) in right]
        left = {key(labels) for labels, _ in lhs}
        return lhs + [(labels, value) for labels, value in rhs if key(labels) not in left]
    compare = _COMPARE[op]
    if isinstance(rhs, float) and isinstance(lhs, list):
        return [(labels, value) for labels, value in lhs if compare(float(value), rhs)]
    if isinstance(lhs, float) and isinstance(rhs, list):
        return [(labels, value) for labels, value in rhs if compare(lhs, float(value))]
    right_values = {key(labels): value for labels, value in rhs}
    return [(labels, value) for labels, value in lhs
            if key(labels) in right_values and compare(float(value), right_values[key(labels)])]


def _rule(name: str) -> dict[str, Any]:
    return next(rule for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
                for rule in group["rules"] if rule["alert"] == name)


@pytest.mark.parametrize(("at", "last_year", "fires"), [
    ("2026-10-31T23:00", 2026, False),   # October: the notice is not out yet
    ("2026-11-01T00:00", 2026, True),    # from November, while the calendar ends this year
    ("2026-12-03T12:00", 2026, True),
    ("2026-12-03T12:00", 2027, False),   # next year added
    ("2027-01-05T12:00", 2026, True),    # already in a year with no data
    ("2027-06-01T12:00", 2027, False),
])
def test_the_calendar_running_out_alert_fires_in_november(at: str, last_year: int,
                                                           fires: bool) -> None:
    import promql_parser

    expr = promql_parser.parse(_rule("EcourtWorkdayCalendarRunningOut")["expr"])
    labels = {"service": "matters", "process": "api", "instance": "matters-api:8000"}
    series: Series = {"workday_calendar_last_year": [(labels, float(last_year))]}
    result = evaluate(expr, series, datetime.fromisoformat(at))
    assert bool(result) is fires, result
    if fires:
        assert [value for _, value in result] == [last_year]   # the summary's {{ $value }}


def test_the_calendar_uncovered_alert_fires_on_any_day_counted_without_data() -> None:
    import promql_parser

    expr = promql_parser.parse(_rule("EcourtWorkdayCalendarUncovered")["expr"])
    at = datetime(2026, 12, 3, 12)
    assert evaluate(expr, {}, at) == []
    series: Series = {"workday_calendar_uncovered_days_total": [
        ({"year": "2027", "service": "matters", "process": "api"}, 9.0),
        ({"year": "2027", "service": "identity", "process": "api"}, 0.0)]}
    assert evaluate(expr, series, at) == [({"year": "2027"}, 9.0)]


# ------------------------------------------------------------------------------------------------
# Dockerfile
# ------------------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) pairs: comments dropped, continuation lines joined."""
    instructions, buffer = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buffer):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, rest = buffer.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a continued line"
    return instructions


def split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """``--from=build --chown=x a b`` -> ({"from": "build", "chown": "x"}, ["a", "b"])."""
    words = json.loads(args) if args.startswith("[") else shlex.split(args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))


def _stages(instructions: list[tuple[str, str]]) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    name, body = None, []
    for keyword, args in instructions:
        if keyword == "FROM":
            if name is not None:
                yield name, body
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else words[0]
            body = [(keyword, args)]
        elif name is not None:
            body.append((keyword, args))
    if name is not None:
        yield name, body


def test_dockerfile_is_multi_stage_on_python_311(dockerfile: list[tuple[str, str]]) -> None:
    args = {}
    for keyword, rest in dockerfile:
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args[key] = value
    froms = [rest.split()[0] for keyword, rest in dockerfile if keyword == "FROM"]
    assert len(froms) >= 2, "build wheels in one stage, run in another"
    for image in froms:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert resolved.startswith("python:3.11-slim"), resolved


def test_dockerfile_copies_only_what_exists(dockerfile: list[tuple[str, str]]) -> None:
    dockerignore = [line.strip().rstrip("/") for line in
                    (ROOT / ".dockerignore").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    stage_names = [name for name, _ in _stages(dockerfile)]
    for keyword, args in dockerfile:
        if keyword in ("COPY", "ADD"):
            flags, words = split_flags(args)
            if "from" in flags:
                assert flags["from"] in stage_names, f"COPY --from={flags['from']}"
                continue
            assert keyword == "COPY", "ADD fetches and unpacks; use COPY"
            for source in words[:-1]:
                matches = list(ROOT.glob(source))
                assert matches, f"COPY {source}: no such file in the repository"
                assert not any(fnmatch.fnmatch(source, p) for p in dockerignore), \
                    f"COPY {source}: excluded by .dockerignore"
        if keyword == "RUN" and "--mount=" in args:
            for mount in re.findall(r"--mount=(\S+)", args):
                opts = dict(part.partition("=")[::2] for part in mount.split(","))
                if "from" in opts:
                    assert opts["from"] in stage_names, mount


def test_dockerfile_builds_with_the_pins(dockerfile: list[tuple[str, str]]) -> None:
    runs = [args for keyword, args in dockerfile if keyword == "RUN"]
    assert any(re.search(r"pip (wheel|install) .*-c constraints\.txt", r) for r in runs)
    assert any("--no-index" in r for r in runs), "the runtime installs only the built wheels"
    assert any("fonts-wqy-microhei" in r for r in runs), "a CJK font for the PDFs"


def test_dockerfile_final_stage_runs_ecourt_as_non_root(
        dockerfile: list[tuple[str, str]]) -> None:
    _, final = list(_stages(dockerfile))[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user, f"runs as {users[-1]}"
    entrypoints = [args for keyword, args in final if keyword == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["ecourt"]
    checks = [args for keyword, args in final if keyword == "HEALTHCHECK"]
    assert checks, "the final stage needs a HEALTHCHECK"
    flags, command = split_flags(checks[-1])
    assert command[0] == "CMD" and "python" in command[1] and "/healthz" in checks[-1]
    assert "curl" not in checks[-1]
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus" in env
    assert "ECOURT_DATA_DIR=/var/lib/ecourt" in env


def test_dockerignore_keeps_the_context_small_and_clean() -> None:
    lines = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for entry in (".git", ".venv", "data/", "deploy/secrets/"):
        assert entry in lines, entry


# ------------------------------------------------------------------------------------------------
# Kubernetes
# ------------------------------------------------------------------------------------------------


def _by_kind(docs: list[tuple[str, dict[str, Any]]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in docs if doc["kind"] == kind}


def _containers(deployment: dict[str, Any], init: bool = False) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return spec.get("containers", []) + (spec.get("initContainers", []) if init else [])


def test_kustomization_lists_every_manifest(k8s_docs: list[tuple[str, dict[str, Any]]]) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(r for r in listed if r.endswith(".yaml")) == on_disk
    # the other resources are kustomizations of their own (the calendar's generated ConfigMap)
    folders = [r for r in listed if not r.endswith(".yaml")]
    assert folders == ["../calendar"]
    assert all((K8S / f / "kustomization.yaml").is_file() for f in folders)
    assert kustomization["namespace"] == "ecourt"
    assert [i["name"] for i in kustomization["images"]] == ["ecourt"]
    namespaces = _by_kind(k8s_docs, "Namespace")
    assert list(namespaces) == ["ecourt"]
    for _, doc in k8s_docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name")
        assert doc["metadata"].get("namespace") in (None, "ecourt"), doc["metadata"]["name"]
        assert doc["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "ecourt"
        assert doc["kind"] != "Secret", "Secrets are created out of band, never committed"
    names = [(doc["kind"], doc["metadata"]["name"]) for _, doc in k8s_docs]
    assert len(names) == len(set(names)), "duplicate objects"


def test_k8s_has_every_process(k8s_docs: list[tuple[str, dict[str, Any]]],
                               parser: argparse.ArgumentParser) -> None:
    deployments = _by_kind(k8s_docs, "Deployment")
    k8s_services = _by_kind(k8s_docs, "Service")
    expected = {"gateway", NOTIFIER}
    for svc in SERVICES:
        expected |= {f"{svc}-api", f"{svc}-relay", f"{svc}-consumer"}
        assert f"{svc}-api" in k8s_services, f"{svc}-api has no Service"
    expected |= {f"{svc}-scheduler" for svc in SCHEDULED}
    assert set(deployments) == expected
    assert set(k8s_services) == {f"{svc}-api" for svc in SERVICES} | {"gateway"}

    for name, deployment in deployments.items():
        main = _containers(deployment)
        assert len(main) == 1, name
        args = parse_cli(parser, main[0]["args"], name)
        expected_cmd = {"api": "serve", "relay": "relay", "consumer": "consume",
                        "scheduler": "scheduler"}
        if name == "gateway":
            assert (args.command, args.service) == ("serve", "gateway")
            assert bind_port(main[0]["args"]) == GATEWAY_PORT
        elif name == NOTIFIER:
            assert (args.command, args.service) == ("consume", NOTIFIER)
        else:
            svc, process = name.rsplit("-", 1)
            assert (args.command, args.service) == (expected_cmd[process], svc), name
            if process == "api":
                assert bind_port(main[0]["args"]) == API_PORT and args.no_migrate, name
            else:
                assert args.metrics_port == METRICS_PORT, name
        for container in _containers(deployment, init=True):
            assert container["image"] == "ecourt", f"{name}: kustomize sets the image"
            parse_cli(parser, container["args"], f"{name}/{container['name']}")
        if name.endswith("-api") or name == NOTIFIER:
            service = name.removesuffix("-api")
            inits = deployment["spec"]["template"]["spec"].get("initContainers", [])
            assert [c["args"] for c in inits] == [["migrate", service]], \
                f"{name} must migrate its database before it starts"


def test_k8s_replicas_resources_and_security(
        k8s_docs: list[tuple[str, dict[str, Any]]]) -> None:
    for name, deployment in _by_kind(k8s_docs, "Deployment").items():
        replicas = deployment["spec"]["replicas"]
        if name.endswith("-api") or name == "gateway":
            assert replicas >= 2, f"{name}: an API keeps serving during a rollout"
        if name.endswith("-relay"):
            assert replicas >= 2, f"{name}: relays share the outbox with SKIP LOCKED"
        assert replicas >= 1, name
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        for container in _containers(deployment, init=True):
            where = f"{name}/{container['name']}"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            mounted = {m["name"] for m in container.get("volumeMounts", [])}
            assert mounted <= {v["name"] for v in pod.get("volumes", [])}, where


#: an idle ``ecourt serve gateway --workers 2``: the arbiter ~77 MB and each worker ~97 MB of
#: RSS (measured 2026-12-03), with room for the bodies' socket buffers and the heap's slack
GATEWAY_IDLE_BYTES = 300 * 2**20


def test_k8s_gateway_body_budget_fits_its_memory_limit(
        k8s_docs: list[tuple[str, dict[str, Any]]]) -> None:
    """Each gateway worker may hold ``GATEWAY_BODY_BUDGET_BYTES`` of request bodies: all its
    workers at the budget must not take the pod past its memory limit (an OOM kill would drop
    every upload and answer in flight, not just the one too many)."""
    [container] = _containers(_by_kind(k8s_docs, "Deployment")["gateway"])
    args = container["args"]
    workers = int(args[args.index("--workers") + 1])
    env = {var["name"]: var["value"] for var in container.get("env", []) if "value" in var}
    budget = int(env.get("GATEWAY_BODY_BUDGET_BYTES") or body_budget_bytes())
    limit = _bytes(container["resources"]["limits"]["memory"])
    assert workers * budget + GATEWAY_IDLE_BYTES <= limit, (workers, budget, limit)


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(quantity[:-2]) * units[quantity[-2:]] if quantity[-2:] in units else int(quantity)


def test_k8s_labels_selectors_and_ports_match(k8s_docs: list[tuple[str, dict[str, Any]]]) -> None:
    deployments = _by_kind(k8s_docs, "Deployment")
    for name, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector and selector.items() <= labels.items(), f"{name}: selector/labels"
        assert selector == {"app.kubernetes.io/name": name}, name
        assert deployment["metadata"]["labels"] == labels, name
    for name, service in _by_kind(k8s_docs, "Service").items():
        selector = service["spec"]["selector"]
        targets = [d for d in deployments.values()
                   if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(targets) == 1, f"Service {name} selects {len(targets)} Deployments"
        ports = {p["name"]: p["containerPort"] for c in _containers(targets[0])
                 for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports or target in ports.values(), f"{name}: {target}"
            assert port["port"] == (ports.get(target) or target), name


def _probe(container: dict[str, Any], kind: str) -> tuple[str, Any]:
    probe = container.get(kind)
    assert probe, f"{container['name']}: no {kind}"
    return probe["httpGet"]["path"], probe["httpGet"]["port"]


def test_k8s_probes(k8s_docs: list[tuple[str, dict[str, Any]]]) -> None:
    for name, deployment in _by_kind(k8s_docs, "Deployment").items():
        (container,) = _containers(deployment)
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if name.endswith("-api"):
            assert _probe(container, "readinessProbe") == ("/readyz", "http"), name
            assert _probe(container, "livenessProbe") == ("/healthz", "http"), name
            assert ports["http"] == API_PORT, name
        elif name == "gateway":
            _probe(container, "readinessProbe")
            assert _probe(container, "livenessProbe") == ("/healthz", "http"), name
            assert ports["http"] == GATEWAY_PORT
        else:
            assert _probe(container, "livenessProbe") == ("/metrics", "metrics"), name
            assert ports["metrics"] == METRICS_PORT, name
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if kind in container:
                assert container[kind]["httpGet"]["port"] in ports, f"{name}: {kind}"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert int(annotations["prometheus.io/port"]) in ports.values(), name


def test_k8s_config_and_secrets(k8s_docs: list[tuple[str, dict[str, Any]]]) -> None:
    configmaps = _by_kind(k8s_docs, "ConfigMap")
    k8s_services = _by_kind(k8s_docs, "Service")
    claims = _by_kind(k8s_docs, "PersistentVolumeClaim")
    config = configmaps["ecourt-config"]["data"]
    for svc in SERVICES:
        url = urlsplit(config[f"GATEWAY_UPSTREAM_{svc.upper()}"])
        assert url.hostname == f"{svc}-api" and url.hostname in k8s_services, svc
        assert url.port in {p["port"] for p in k8s_services[url.hostname]["spec"]["ports"]}
    assert urlsplit(config["ECOURT_JWKS_URL"]).hostname in k8s_services
    for key, value in config.items():
        assert not SECRET_NAME.search(key), f"ConfigMap holds {key}: use a Secret"
        assert "://" not in value or urlsplit(value).password is None, f"{key}: a password"

    for name, deployment in _by_kind(k8s_docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
        service = name.rsplit("-", 1)[0] if name != NOTIFIER else NOTIFIER
        for container in _containers(deployment, init=True):
            where = f"{name}/{container['name']}"
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, where
            for var in container.get("env", []):
                literal = var.get("value")
                if literal is not None:
                    assert var["name"].endswith("_FILE") or not SECRET_NAME.search(
                        var["name"]), f"{where}: {var['name']} in clear"
                    assert "://" not in literal or urlsplit(literal).password is None, where
                if var["name"].endswith("_DATABASE_URL"):
                    assert var["name"] == f"{service.upper()}_DATABASE_URL", \
                        f"{where} gets another service's database"
                    assert var["valueFrom"]["secretKeyRef"]["key"] == var["name"], where
            if name != "gateway":
                names = {v["name"] for v in container.get("env", [])}
                assert f"{service.upper()}_DATABASE_URL" in names, where


def _pod_specs(docs: list[tuple[str, dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for _, doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}:
            yield doc["metadata"]["name"], spec["template"]["spec"]


def _secrets_of(pod: dict[str, Any], container: dict[str, Any]) -> set[str]:
    """Names of the Secrets a container reads: env, envFrom and mounted volumes."""
    names = {v["valueFrom"]["secretKeyRef"]["name"] for v in container.get("env", [])
             if "secretKeyRef" in v.get("valueFrom", {})}
    names |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
    mounted = {m["name"] for m in container.get("volumeMounts", [])}
    for volume in pod.get("volumes", []):
        if volume["name"] in mounted:
            if "secret" in volume:
                names.add(volume["secret"]["secretName"])
            for source in volume.get("projected", {}).get("sources", []):
                if "secret" in source:
                    names.add(source["secret"]["name"])
    return names


def test_k8s_sms_key_goes_only_to_the_processes_that_seal_or_open(
        k8s_docs: list[tuple[str, dict[str, Any]]]) -> None:
    holders = set()
    for name, pod in _pod_specs(k8s_docs):
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            env_names = {v["name"] for v in container.get("env", [])}
            if (SMS_KEY_SECRET_K8S in _secrets_of(pod, container)
                    or any(n.startswith("ECOURT_SMS_KEY") for n in env_names)):
                holders.add((name, container["name"]))
    assert holders == SMS_KEY_K8S, "the SMS key goes to these containers and no other"
    deployments = _by_kind(k8s_docs, "Deployment")
    for name, container_name in SMS_KEY_K8S:
        container = next(c for c in _containers(deployments[name])
                         if c["name"] == container_name)
        var = next(v for v in container["env"] if v["name"] == "ECOURT_SMS_KEY")
        assert var["valueFrom"]["secretKeyRef"] == {"name": SMS_KEY_SECRET_K8S,
                                                    "key": "ECOURT_SMS_KEY"}, name


# ------------------------------------------------------------------------------------------------
# Stopping: the grace before the kill covers an orderly stop
# ------------------------------------------------------------------------------------------------

#: what Docker and Kubernetes wait after TERM before they kill, when the file says nothing
DEFAULT_GRACE = {"compose": 10.0, "k8s": 30.0}
#: the work in hand when TERM comes: the batch's transactions, the outbox rows' update
BATCH_IN_HAND = 10.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(duration: str) -> float:
    """A compose duration (``1m30s``) in seconds."""
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(duration))


def orderly_stop_seconds(command: str) -> float:
    """The longest a relay or a consumer may take, once told to stop, before it exits: the
    batch in hand, then for a consumer its broker close (``consumer.CLOSE_WITHIN``; on a dead
    line it waited two read timeouts, two minutes with the default heartbeat), for a relay the
    publish under way (connected within the publisher's connect timeout, confirmed within its
    confirm timeout) and the publisher's close (a second). The notifier (``consume notifier``,
    a pika consumer) is held to the consumer's bound: its message in hand (an SMS call and a
    wait between tries, five seconds each at most) fits the batch's allowance, and its close
    is bounded by ``CLOSE_WITHIN`` too (``services.notifier.pika_consumer``)."""
    from servicekit.consumer import CLOSE_WITHIN
    from servicekit.publishers import PikaPublisher

    if command == "consume":
        return BATCH_IN_HAND + CLOSE_WITHIN
    given = inspect.signature(PikaPublisher).parameters
    return (BATCH_IN_HAND + given["connect_timeout"].default + given["confirm_timeout"].default
            + 1.0)


def test_relays_and_consumers_are_given_the_time_to_stop_in_order(
        services: dict[str, dict[str, Any]], k8s_docs: list[tuple[str, dict[str, Any]]]) -> None:
    """Killed before, a consumer's last acks never reach the broker (the batch is handled
    again), a relay's last published rows are published again: both harmless, but a rollout
    or a ``docker compose stop`` would do it every time."""
    checked: list[tuple[str, float, float]] = []
    for name, svc in ecourt_services(services).items():
        if svc["command"][0] in ("relay", "consume"):
            grace = _seconds(svc.get("stop_grace_period") or "") or DEFAULT_GRACE["compose"]
            checked.append((f"compose {name}", grace, orderly_stop_seconds(svc["command"][0])))
    for name, deployment in _by_kind(k8s_docs, "Deployment").items():
        command = _containers(deployment)[0]["args"][0]
        if command in ("relay", "consume"):
            grace = deployment["spec"]["template"]["spec"].get(
                "terminationGracePeriodSeconds", DEFAULT_GRACE["k8s"])
            checked.append((f"k8s {name}", float(grace), orderly_stop_seconds(command)))
    assert len(checked) == 2 * (2 * len(SERVICES) + 1), "every relay and consumer, both files"
    short = [(where, grace, needed) for where, grace, needed in checked if grace < needed]
    assert short == [], "grace period (s) shorter than an orderly stop (s)"


# ------------------------------------------------------------------------------------------------
# The working-day calendar (servicekit/workdays.py): the administrator's file reaches the
# processes that count deadlines
# ------------------------------------------------------------------------------------------------

#: the services whose code counts working days (checked against the code below) and their
#: processes that do: not the relays (they publish) nor the migrations
CALENDAR_SERVICES = ("identity", "matters")
CALENDAR_PROCESSES = {"identity-api", "identity-consumer", "matters-api", "matters-consumer",
                      "matters-scheduler"}
CALENDAR_DIR = DEPLOY / "calendar"
CALENDAR_JSON = CALENDAR_DIR / "workday-calendar.json"


def test_the_services_that_count_working_days_are_the_calendar_s() -> None:
    users = {path.relative_to(ROOT / "services").parts[0]
             for path in (ROOT / "services").rglob("*.py")
             if "tests" not in path.parts
             and "servicekit.workdays import" in path.read_text(encoding="utf-8")}
    assert users == set(CALENDAR_SERVICES)
    assert {name.rsplit("-", 1)[0] for name in CALENDAR_PROCESSES} == users


def test_the_shipped_calendar_is_empty_and_valid() -> None:
    """As shipped, the package's years alone; no year is invented in the repository."""
    from servicekit.config import calendar_years

    assert calendar_years(json.loads(CALENDAR_JSON.read_text(encoding="utf-8"))) == {}


def test_k8s_generates_the_calendar_configmap_from_the_file_compose_mounts(
        k8s_docs: list[tuple[str, dict[str, Any]]]) -> None:
    """One file for both deployments, and no hand-written copy of it: kustomize's generator
    names the ConfigMap after its content, so an edited calendar rolls the pods that read it
    on the next ``kubectl apply -k`` (a fixed name would leave them on the old file, and a
    ConfigMap edited in the cluster would be set back by the next apply)."""
    kustomization = yaml.safe_load((CALENDAR_DIR / "kustomization.yaml").read_text())
    generators = {g["name"]: g for g in kustomization["configMapGenerator"]}
    assert list(generators) == ["workday-calendar"]
    assert generators["workday-calendar"]["files"] == [CALENDAR_JSON.name]
    assert not generators["workday-calendar"].get("options", {}).get(
        "disableNameSuffixHash"), "the content hash in the name is what rolls the pods"
    assert "workday-calendar" not in _by_kind(k8s_docs, "ConfigMap"), "a second copy"


def test_compose_gives_the_calendar_to_the_processes_that_count_deadlines(
        services: dict[str, dict[str, Any]]) -> None:
    given = set()
    for name, svc in ecourt_services(services).items():
        path = svc.get("environment", {}).get("ECOURT_WORKDAY_CALENDAR_FILE")
        if path is None:
            continue
        given.add(name)
        assert f"./{CALENDAR_JSON.relative_to(ROOT)}:{path}:ro" in svc.get("volumes", []), name
    assert given == CALENDAR_PROCESSES


def test_k8s_gives_the_calendar_to_the_processes_that_count_deadlines(
        k8s_docs: list[tuple[str, dict[str, Any]]]) -> None:
    given = set()
    for name, deployment in _by_kind(k8s_docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        for container in _containers(deployment, init=True):
            path = next((var["value"] for var in container.get("env", [])
                         if var["name"] == "ECOURT_WORKDAY_CALENDAR_FILE"), None)
            if path is None:
                continue
            given.add(name)
            volumes = {v["name"]: v for v in pod["volumes"]}
            mounts = [m for m in container["volumeMounts"]
                      if "configMap" in volumes[m["name"]]
                      and volumes[m["name"]]["configMap"]["name"] == "workday-calendar"]
            assert [f"{m['mountPath']}/workday-calendar.json" for m in mounts] == [path], name
    assert given == CALENDAR_PROCESSES


def _keeps_blobs() -> list[str]:
    """The services whose API writes a blob store (``ServiceDefinition.blob_store``)."""
    from ecourt import registry

    return sorted(name for name, d in registry.SERVICES.items() if d.blob_store is not None)


def test_the_services_that_keep_blobs() -> None:
    assert _keeps_blobs() == ["documents", "identity", "matters"]


@pytest.mark.parametrize("service", _keeps_blobs())
def test_compose_keeps_a_services_blobs_on_a_named_volume(compose: dict[str, Any],
                                                          service: str) -> None:
    """Uploads and issued PDFs live under the data folder (``ECOURT_DATA_DIR``, the default
    parent of every ``<SERVICE>_BLOB_DIR``): the API's container must mount a named volume
    there, or a recreated container — and any other replica — has lost them (failed before for
    identity's licences and certificates and matters' letters: in the container's own layer)."""
    api = compose["services"][f"{service}-api"]
    env = api.get("environment", {})
    assert not any(k.endswith("_BLOB_DIR") for k in env), "the volume is checked at the data dir"
    data_dir = compose["x-common-env"]["ECOURT_DATA_DIR"]
    mounts = dict(v.split(":")[1::-1] for v in api.get("volumes", []) if isinstance(v, str))
    source = mounts.get(data_dir)
    assert source in compose["volumes"], (service, api.get("volumes"))


@pytest.mark.parametrize("service", _keeps_blobs())
def test_k8s_keeps_a_services_blobs_on_a_shared_claim(
        k8s_docs: list[tuple[str, dict[str, Any]]], service: str) -> None:
    """The API's data folder is a PersistentVolumeClaim every replica mounts (ReadWriteMany),
    not an emptyDir that goes with the pod (failed before for identity and matters)."""
    [api] = [d for _, d in k8s_docs if d["kind"] == "Deployment"
             and d["metadata"]["name"] == f"{service}-api"]
    pod = api["spec"]["template"]["spec"]
    [mount] = [m for c in pod["containers"] for m in c.get("volumeMounts", [])
               if m["mountPath"] == "/var/lib/ecourt"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    [pvc] = [d for _, d in k8s_docs if d["kind"] == "PersistentVolumeClaim"
             and d["metadata"]["name"] == claim]
    if api["spec"].get("replicas", 1) > 1:
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize("service", _keeps_blobs())
def test_k8s_collects_a_services_blob_garbage_daily_on_the_apis_claim(
        k8s_docs: list[tuple[str, dict[str, Any]]], parser: argparse.ArgumentParser,
        service: str) -> None:
    """A refused upload leaves its blob behind (written before the transaction): a CronJob
    runs ``ecourt blobs gc <service>`` against the claim the API writes, one run at a time."""
    [job] = [d for _, d in k8s_docs if d["kind"] == "CronJob"
             and d["metadata"]["name"] == f"{service}-blob-gc"]
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = parser.parse_args(container["args"])
    assert (args.command, args.service, args.dry_run) == ("blobs", service, False)
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/var/lib/ecourt"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] == f"{service}-data"
    names = {e["name"] for e in container["env"]}
    assert f"{service.upper()}_DATABASE_URL" in names
