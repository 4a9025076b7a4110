"""The gateway's own ``/metrics`` is answered inside the deployment only
(``gateway.metrics_access``): a client on the internet is told 404, as for a route that does
not exist, in both front ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from werkzeug.test import Client

from gateway.metrics_access import readers_from
from gateway.tests.test_edge import front  # noqa: F401 - the fixture
from servicekit.config import ConfigError

PUBLIC = "203.0.113.9"


def _metrics(gw: Any, remote: str, **headers: str) -> Any:
    return Client(gw).get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": remote})


def _is_page(resp: Any) -> bool:
    return resp.status_code == 200 and b"http_requests_total" in resp.data


def _is_absent(resp: Any) -> bool:
    return (resp.status_code == 404 and resp.content_type == "application/problem+json"
            and b"http_requests_total" not in resp.data)


@pytest.mark.parametrize("remote", ["127.0.0.1", "10.1.2.3", "172.20.0.5", "192.168.1.7",
                                    "100.64.3.4", "::1", "fd00::8", "::ffff:10.0.0.9",
                                    "fd12::1%eth0"])
def test_the_deployments_own_addresses_read_the_metrics(build: Callable[..., Any],
                                                        remote: str) -> None:
    assert _is_page(_metrics(build({}), remote))


@pytest.mark.parametrize("remote", [PUBLIC, "8.8.8.8", "172.32.0.1", "2001:db8::1",
                                    "::ffff:203.0.113.9", "", "unix-socket"])
def test_anyone_else_is_told_there_is_no_such_route(build: Callable[..., Any],
                                                    remote: str) -> None:
    assert _is_absent(_metrics(build({}), remote))


def test_behind_a_trusted_proxy_the_client_counts_not_the_proxy(
        build: Callable[..., Any]) -> None:
    """The ingress is on a private address; what it relays from the internet is refused."""
    gw = build({}, trust_forwarded=True)
    assert _is_absent(_metrics(gw, "10.0.0.2", **{"X-Forwarded-For": PUBLIC}))
    assert _is_page(_metrics(gw, "10.0.0.2", **{"X-Forwarded-For": "10.0.0.77"}))
    # untrusted, a client cannot name itself private
    assert _is_absent(_metrics(build({}), PUBLIC, **{"X-Forwarded-For": "127.0.0.1"}))


def test_the_setting_names_who_may_read(build: Callable[..., Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_METRICS_FROM", f" {PUBLIC} , 198.51.100.0/24")
    gw = build({})
    assert _is_page(_metrics(gw, PUBLIC)) and _is_page(_metrics(gw, "198.51.100.200"))
    assert _is_absent(_metrics(gw, "127.0.0.1"))
    monkeypatch.setenv("GATEWAY_METRICS_FROM", "")
    assert _is_absent(_metrics(build({}), "127.0.0.1"))  # empty: nobody


@pytest.mark.parametrize("value", ["10.0.0.0/33", "localhost", "10.0.0.1/8/8", "*"])
def test_a_bad_entry_is_a_config_error_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match="GATEWAY_METRICS_FROM"):
        readers_from(f"127.0.0.1,{value}")


def test_the_edge_refuses_a_relayed_internet_client(front: Any) -> None:  # noqa: F811
    """Through the distributed front end (its pages are the WSGI app's, handed the client's
    address and forwarded chain)."""
    edge = front({}, trust_forwarded=True)
    own = requests.get(edge.url + "/metrics", timeout=5)
    assert own.status_code == 200 and "http_requests_total" in own.text
    relayed = requests.get(edge.url + "/metrics", headers={"X-Forwarded-For": PUBLIC},
                           timeout=5)
    assert relayed.status_code == 404
    assert relayed.headers["Content-Type"] == "application/problem+json"
    assert "http_requests_total" not in relayed.text
