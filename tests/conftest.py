"""Fixtures for the suite-wide tests: both tiers of the whole suite, driven through HTTP.

``embedded`` runs every service in this process on SQLite and the in-memory bus. ``real`` runs
the same suite on PostgreSQL and RabbitMQ on 127.0.0.1, each in a database and a vhost made for
this run and removed afterwards. If PostgreSQL or RabbitMQ cannot be reached, the real-tier
tests fail loudly (``make test`` starts the servers first); they are never skipped.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from werkzeug.test import Client

from ecourt import registry
from ecourt.embedded import Suite
from servicekit.testing import pg_databases, rabbit_vhost, unique
from services.identity.signin_captcha import CaptchaService


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def infrastructure() -> None:
    missing = [name for name, port in (("PostgreSQL", 5432), ("RabbitMQ", 5672))
               if not _reachable(port)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not reachable on 127.0.0.1: run `make services` "
                    "(make test does it first)", pytrace=False)


def _suite(tmp_path_factory: pytest.TempPathFactory, **kwargs: object) -> Iterator[Suite]:
    suite = Suite(tmp_path_factory.mktemp("suite"), queue_prefix=unique("q") + ".",
                  exchange=unique("ecourt.events"), retry_base=0.05, **kwargs)  # type: ignore[arg-type]
    # a captcha whose answer the tests know (tests/harness.py: CAPTCHA_ANSWER)
    suite.runtimes["identity"].extras["captcha_service"] = CaptchaService(alphabet="K")
    suite.start_workers()
    try:
        yield suite
    finally:
        suite.stop()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    yield from _suite(tmp_path_factory)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, infrastructure: None) -> Iterator[Suite]:
    with rabbit_vhost() as url, pg_databases(list(registry.SERVICES)) as urls:
        yield from _suite(tmp_path_factory, broker_url=url, database_urls=urls)


@pytest.fixture(scope="module", params=["embedded", "real"])
def suite(request: pytest.FixtureRequest) -> Suite:
    """The whole suite, in each tier in turn."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def http(suite: Suite) -> Client:
    """An HTTP client of the suite's gateway."""
    return Client(suite.gateway)
