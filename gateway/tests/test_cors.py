"""CORS (``gateway.cors``): the court's portals, on origins of their own, calling the API from
a browser. Each behaviour is checked on both front ends — the WSGI gateway (embedded tier; its
service in process or over HTTP) and the asyncio edge (``ecourt serve gateway``) — since both
must answer alike."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from flask import Flask, jsonify
from werkzeug.test import Client

from gateway import MemoryRateLimiter, create_gateway
from gateway.cors import MAX_AGE, parse_origins
from gateway.tests.conftest import auth, make_upstream
from gateway.tests.test_edge import EdgeFront
from gateway.tests.test_upstream_http import _closed_port
from servicekit.config import ConfigError

PORTAL = "https://portal.court.example"
OTHER = "https://evil.example"
PREFLIGHT = {"Access-Control-Request-Method": "PUT",
             "Access-Control-Request-Headers": "authorization, content-type, if-match"}


@dataclass
class Answer:
    status: int
    #: lower-case name -> every line's value joined with ", " (as a browser reads them)
    headers: dict[str, str]
    body: bytes

    def cors(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k.startswith("access-control-")}

    def varies_by_origin(self) -> bool:
        return "origin" in {v.strip().lower() for v in self.headers.get("vary", "").split(",")}


@dataclass
class Front:
    """One gateway front end, asked as a browser would."""

    ask: Callable[..., Answer]
    #: the paths the service was asked for
    calls: list[str] = field(default_factory=list)


def _wsgi_answer(resp: Any) -> Answer:
    names = {k.lower() for k, _ in resp.headers}
    return Answer(resp.status_code, {n: ", ".join(resp.headers.getlist(n)) for n in names},
                  resp.get_data())


@pytest.fixture(params=["wsgi-in-process", "wsgi-http", "edge"])
def gateway_front(request: pytest.FixtureRequest, build: Callable[..., Any],
                  serve: Callable[[Any], Any]) -> Iterator[Callable[..., Front]]:
    """``gateway_front(cors_origins, upstream=None, **create_gateway kwargs)`` -> a ``Front``
    over a tiny service named ``svc``, a slow one (``slow``) and one that is down (``down``)."""
    kind = request.param
    edges: list[EdgeFront] = []

    def make(cors_origins: str, upstream: Flask | None = None, **kwargs: Any) -> Front:
        app = upstream or make_upstream()
        live = serve(app)
        upstreams: dict[str, Any] = {
            "svc": app if kind == "wsgi-in-process" else live.url, "slow": live.url,
            "down": f"http://127.0.0.1:{_closed_port()}"}
        kwargs.setdefault("timeout", 0.4)
        gateway = build(upstreams, cors_origins=cors_origins, **kwargs)
        if kind == "edge":
            from gateway.edge import EdgeSettings

            edges.append(EdgeFront(gateway, EdgeSettings()))
            url = edges[-1].url
            session = requests.Session()

            def ask(method: str, path: str, headers: dict[str, str],
                    body: bytes | None = None) -> Answer:
                resp = session.request(method, url + path, headers=headers, data=body,
                                       timeout=5)
                return Answer(resp.status_code, {k.lower(): v for k, v in resp.headers.items()},
                              resp.content)
        else:
            client = Client(gateway)

            def ask(method: str, path: str, headers: dict[str, str],
                    body: bytes | None = None) -> Answer:
                return _wsgi_answer(client.open(path, method=method, headers=headers,
                                                data=body))

        return Front(ask, app.config["calls"])

    yield make
    for edge in edges:
        edge.stop()


def _allowed_actual(answer: Answer) -> None:
    assert answer.headers["access-control-allow-origin"] == PORTAL
    assert answer.varies_by_origin()
    exposed = answer.headers["access-control-expose-headers"].lower().split(", ")
    assert set(exposed) >= {"etag", "location", "retry-after", "x-request-id",
                            "idempotent-replayed"}
    assert "access-control-allow-credentials" not in answer.headers


# -- preflights --------------------------------------------------------------------------------


def test_a_preflight_from_an_allowed_origin_is_answered_by_the_gateway(gateway_front):
    """204 with what the browser asks for, no token needed, and the service never asked."""
    front = gateway_front(f"{PORTAL}, https://other-portal.court.example")
    answer = front.ask("OPTIONS", "/api/svc/echo", {"Origin": PORTAL, **PREFLIGHT})
    assert answer.status == 204, answer.body
    assert answer.body == b"" and "content-length" not in answer.headers
    assert answer.headers["access-control-allow-origin"] == PORTAL
    methods = {m.strip() for m in answer.headers["access-control-allow-methods"].split(",")}
    assert methods >= {"GET", "POST", "PUT", "PATCH", "DELETE"}
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert allowed >= {"authorization", "content-type", "idempotency-key", "if-match",
                       "if-none-match", "x-request-id"}
    assert int(answer.headers["access-control-max-age"]) == MAX_AGE
    assert answer.varies_by_origin()
    assert "access-control-allow-credentials" not in answer.headers
    assert answer.headers["x-request-id"]
    assert front.calls == []


def test_a_preflight_from_an_origin_not_allowed_gets_no_cors_headers(gateway_front):
    """A plain refusal the browser rejects; nothing reaches the service."""
    front = gateway_front(PORTAL)
    for origin in (OTHER, PORTAL + ":8443", "null"):
        answer = front.ask("OPTIONS", "/api/svc/echo", {"Origin": origin, **PREFLIGHT})
        assert answer.status == 403, origin
        assert answer.cors() == {}, origin
    assert front.calls == []


class _LimiterWithIO(MemoryRateLimiter):
    """Decides as the memory limiter, but the edge asks it off its loop, as it asks Redis."""

    inline = False


@pytest.mark.parametrize("limiter", [MemoryRateLimiter, _LimiterWithIO])
def test_preflights_are_rate_limited(gateway_front, limiter):
    """Counted against the client's address like any anonymous request."""
    front = gateway_front(PORTAL, rate_limiter=limiter(2, 60))
    codes = [front.ask("OPTIONS", "/api/svc/echo", {"Origin": PORTAL, **PREFLIGHT}).status
             for _ in range(3)]
    assert codes == [204, 204, 429]
    assert front.calls == []


# -- actual requests ---------------------------------------------------------------------------


def test_answers_to_an_allowed_origin_carry_the_cors_headers(gateway_front, token):
    """The service's 200, and the gateway's own 401 and 429."""
    front = gateway_front(PORTAL, rate_limiter=MemoryRateLimiter(2, 60))
    browser = {"Origin": PORTAL, **auth(token())}
    ok = front.ask("GET", "/api/svc/echo", browser)
    assert ok.status == 200
    _allowed_actual(ok)
    front.ask("GET", "/api/svc/echo", browser)
    limited = front.ask("GET", "/api/svc/echo", browser)
    assert limited.status == 429 and limited.headers["retry-after"]
    _allowed_actual(limited)
    refused = front.ask("GET", "/api/svc/echo", {"Origin": PORTAL})
    assert refused.status == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    _allowed_actual(refused)
    # with a body: the edge refuses it before reading the body, with the same headers
    refused = front.ask("POST", "/api/svc/echo", {"Origin": PORTAL}, b"{}" * 100)
    assert refused.status == 401
    _allowed_actual(refused)


def test_the_gateways_502_and_504_carry_the_cors_headers(gateway_front, token):
    front = gateway_front(PORTAL)
    browser = {"Origin": PORTAL, **auth(token())}
    down = front.ask("GET", "/api/down/echo", browser)
    assert down.status == 502
    _allowed_actual(down)
    slow = front.ask("GET", "/api/slow/slow?t=2", browser)
    assert slow.status == 504
    _allowed_actual(slow)


def test_a_services_own_cors_headers_give_way_to_the_gateways(gateway_front, token):
    """Two ``Access-Control-Allow-Origin`` values would make the browser refuse the answer."""
    app = make_upstream()

    @app.get("/own-cors")
    def own_cors():  # type: ignore[no-untyped-def]
        return jsonify(ok=True), 200, {"Access-Control-Allow-Origin": "*",
                                       "Access-Control-Allow-Credentials": "true"}

    front = gateway_front(PORTAL, upstream=app)
    answer = front.ask("GET", "/api/svc/own-cors", {"Origin": PORTAL, **auth(token())})
    assert answer.status == 200
    _allowed_actual(answer)
    # without an Origin the service's answer passes as it always did
    answer = front.ask("GET", "/api/svc/own-cors", auth(token()))
    assert answer.headers["access-control-allow-origin"] == "*"


def test_an_answer_to_an_origin_not_allowed_has_no_cors_headers(gateway_front, token):
    """The answer is the service's (a browser will not let the page read it), and says it
    depends on the origin, so no cache hands it to an allowed one."""
    front = gateway_front(PORTAL)
    answer = front.ask("GET", "/api/svc/echo", {"Origin": OTHER, **auth(token())})
    assert answer.status == 200
    assert answer.cors() == {}
    assert answer.varies_by_origin()


# -- off, or no Origin: as before ----------------------------------------------------------------


def test_nothing_is_added_when_cors_is_off(gateway_front, token, monkeypatch):
    """Unset (the default) or empty: no CORS header, and an OPTIONS goes to the service as
    any request does."""
    monkeypatch.delenv("GATEWAY_CORS_ORIGINS", raising=False)
    for setting in (None, "", " , "):
        front = gateway_front(setting)
        answer = front.ask("GET", "/api/svc/echo", {"Origin": PORTAL, **auth(token())})
        assert answer.status == 200
        assert answer.cors() == {} and not answer.varies_by_origin()
        refused = front.ask("GET", "/api/svc/echo", {"Origin": PORTAL})
        assert refused.status == 401 and refused.cors() == {}
        options = front.ask("OPTIONS", "/api/svc/echo",
                            {"Origin": PORTAL, **PREFLIGHT, **auth(token())})
        assert options.cors() == {} and not options.varies_by_origin()
        assert front.calls == ["/echo", "/echo"], setting  # the GET and the OPTIONS


def test_nothing_is_added_to_a_request_without_origin(gateway_front, token):
    """Not a browser's cross-origin request: answered exactly as with CORS off."""
    front = gateway_front(PORTAL)
    answer = front.ask("GET", "/api/svc/echo", auth(token()))
    assert answer.status == 200
    assert answer.cors() == {} and "vary" not in answer.headers
    refused = front.ask("GET", "/api/svc/echo", {})
    assert refused.status == 401 and refused.cors() == {} and "vary" not in refused.headers
    options = front.ask("OPTIONS", "/api/svc/echo", {**PREFLIGHT, **auth(token())})
    assert options.cors() == {}
    assert front.calls == ["/echo", "/echo"]


# -- the setting ---------------------------------------------------------------------------------


def test_origins_are_compared_as_a_browser_sends_them():
    assert parse_origins(" https://Portal.Court.example:443/ ,http://localhost:5173,"
                         "http://[::1]:80, https://法院.cn") == [
        "https://portal.court.example", "http://localhost:5173", "http://[::1]",
        "https://xn--nww899f.cn"]


@pytest.mark.parametrize("entry", ["*", "null", "portal.court.example", "ftp://portal.court",
                                   "https://portal.court/app", "https://u:p@portal.court",
                                   "https://portal.court?x", "https://portal.court:99999",
                                   "https://"])
def test_a_bad_origin_stops_the_gateway_naming_the_setting(entry, verifier, monkeypatch):
    """``*`` included: the portals are named one by one, never "any site"."""
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", f"{PORTAL},{entry}")
    with pytest.raises(ConfigError, match="GATEWAY_CORS_ORIGINS"):
        create_gateway(upstreams={"svc": make_upstream()}, verifier=verifier,
                       rate_limiter=MemoryRateLimiter(10, 60))


def test_the_setting_is_read_from_the_environment(verifier, monkeypatch, token):
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", PORTAL)
    gateway = create_gateway(upstreams={"svc": make_upstream()}, verifier=verifier,
                             rate_limiter=MemoryRateLimiter(10, 60), trust_forwarded=False)
    resp = Client(gateway).get("/api/svc/echo", headers={"Origin": PORTAL, **auth(token())})
    assert resp.headers["Access-Control-Allow-Origin"] == PORTAL

