"""Request metrics label a method outside the standard set ``other``, in the services and in
the gateway: werkzeug's server takes any token as a method, and each new label value was a
metric child kept for ever (``AAAA1 /healthz``, ``AAAA2 /healthz``, ... grew memory)."""

from __future__ import annotations

import time

from werkzeug.test import Client

from ecourt.embedded import Suite
from gateway.app import AccessTally, record_access
from servicekit import metrics
from servicekit.metrics import STANDARD_METHODS, method_label

ODD = [f"AAAA{n}" for n in range(1, 6)]


def _methods_seen() -> set[str]:
    return {labels[2] for labels in metrics.HTTP_REQUESTS._metrics} | {
        labels[2] for labels in metrics.HTTP_LATENCY._metrics}


def _requests(service: str, route: str, method: str, status: str) -> float:
    return metrics.HTTP_REQUESTS.labels(service, route, method, status)._value.get()


def test_the_label_keeps_standard_methods_and_folds_the_rest() -> None:
    for method in STANDARD_METHODS:
        assert method_label(method) == method
    for method in ("AAAA1", "PROPFIND", "get", "", "TRACE", "CONNECT"):
        assert method_label(method) == "other"


def test_unknown_methods_land_in_one_other_label_in_services_and_gateway(
        embedded: Suite) -> None:
    service = Client(embedded.apps["identity"])
    gateway = Client(embedded.gateway)
    before = {
        "service": _requests("identity", "unmatched", "other", "405"),
        "gateway": _requests("gateway", "gateway", "other", "405"),
        "routed": _requests("gateway", "/api/identity", "other", "401"),
    }
    for method in ODD:
        assert service.open("/healthz", method=method).status_code == 405
        assert gateway.open("/healthz", method=method, buffered=True).status_code == 405
        # not a public route for that method: the gateway wants a token
        assert gateway.open("/api/identity/healthz", method=method,
                            buffered=True).status_code == 401
    seen = _methods_seen()
    assert not seen.intersection(ODD), seen
    assert _requests("identity", "unmatched", "other", "405") - before["service"] == len(ODD)
    assert _requests("gateway", "gateway", "other", "405") - before["gateway"] == len(ODD)
    assert _requests("gateway", "/api/identity", "other", "401") - before["routed"] == len(ODD)


def test_the_edge_front_ends_tally_folds_them_too() -> None:
    tally = AccessTally()
    before = _requests("gateway", "/api/tally-methods", "other", "405")
    for method in ODD:
        record_access(method, "/api/tally-methods/x", 405, time.perf_counter(), "rid",
                      "tally-methods", tally)
    tally.flush()
    assert not _methods_seen().intersection(ODD)
    assert _requests("gateway", "/api/tally-methods", "other", "405") - before == len(ODD)
