"""The gateway's own /metrics counts the requests it routed, by upstream and status."""

from __future__ import annotations

import re

from flask import Flask
from werkzeug.test import Client

from gateway.app import create_gateway
from gateway.ratelimit import MemoryRateLimiter
from servicekit.tokens import SigningKey, TokenVerifier


def _count(text: str, status: str) -> float:
    pattern = re.compile(r'^http_requests_total\{([^}]*)\} ([0-9.e+]+)$', re.M)
    return sum(float(v) for labels, v in pattern.findall(text)
               if 'service="gateway"' in labels and 'route="/api/filing"' in labels
               and f'status="{status}"' in labels)


def test_metrics_count_routed_requests() -> None:
    upstream = Flask("up")

    @upstream.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        return {"ok": True}

    key = SigningKey.generate()
    gw = Client(create_gateway(upstreams={"filing": upstream},
                               verifier=TokenVerifier(lambda: {"keys": [key.jwk()]}),
                               rate_limiter=MemoryRateLimiter(1000, 60)))
    prometheus = {"REMOTE_ADDR": "10.0.0.5"}  # who may read them (gateway.metrics_access)
    before = _count(gw.get("/metrics", environ_base=prometheus).get_data(as_text=True), "200")
    for _ in range(3):
        assert gw.get("/api/filing/healthz", buffered=True).status_code == 200
    after = _count(gw.get("/metrics", environ_base=prometheus).get_data(as_text=True), "200")
    assert after - before == 3


def test_a_tally_writes_what_one_observation_at_a_time_would() -> None:
    """``AccessTally`` adds answers up and writes them in bulk through prometheus-client's
    histogram internals; the result must be what ``inc``/``observe`` per answer give."""
    from gateway.app import AccessTally, _series

    durations = [0.001, 0.005, 0.0051, 0.2, 0.25, 3.0, 11.0, 0.0]
    direct_counter, direct_latency = _series("tally-direct", "GET", 200)
    for d in durations:
        direct_counter.inc()
        direct_latency.observe(d)
    tally = AccessTally()
    for d in durations:
        tally.add("tally-bulk", "GET", 200, d)
    bulk_counter, bulk_latency = _series("tally-bulk", "GET", 200)
    assert bulk_counter._value.get() == 0  # nothing written before the flush
    tally.flush()

    def samples(metric):  # type: ignore[no-untyped-def]
        return [(s.name, s.labels.get("le"), round(s.value, 9))
                for family in metric.collect() for s in family.samples
                if not s.name.endswith("_created")]

    assert samples(bulk_latency) == samples(direct_latency)
    assert bulk_counter._value.get() == direct_counter._value.get() == len(durations)
    tally.flush()  # nothing new: nothing written twice
    assert bulk_counter._value.get() == len(durations)
