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
    before = _count(gw.get("/metrics").get_data(as_text=True), "200")
    for _ in range(3):
        assert gw.get("/api/filing/healthz", buffered=True).status_code == 200
    after = _count(gw.get("/metrics").get_data(as_text=True), "200")
    assert after - before == 3
