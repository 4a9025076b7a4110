"""Routing, internal routes, request ids, the access log, and the in-process upstream."""

from __future__ import annotations

import logging
import re

import pytest
from werkzeug.test import Client

from gateway.routing import PublicRoutes, client_ip, is_internal, split_api_path
from gateway.tests.conftest import auth, make_upstream

GENERATED_ID = re.compile(r"^[a-z2-7]{16}-[0-9a-f]+$")  # see routing.request_id_from


def _problem(resp, status):  # type: ignore[no-untyped-def]
    assert resp.status_code == status
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["status"] == status
    assert body["request_id"] == resp.headers["X-Request-ID"]
    return body


def test_split_api_path():
    assert split_api_path("/api/identity/tokens") == ("identity", "/tokens")
    assert split_api_path("/api/identity") == ("identity", "/")
    assert split_api_path("/api/identity/") == ("identity", "/")
    assert split_api_path("/other") is None
    assert split_api_path("/api/") is None
    assert is_internal("/internal/x") and is_internal("//Internal/x")
    assert is_internal("/internal;v=1/x") and not is_internal("/internals/x")
    assert is_internal("/metrics") and is_internal("//Metrics;x") and is_internal("/metrics/")
    assert not is_internal("/healthz") and not is_internal("/echo/metrics")


def test_public_routes_matching():
    routes = PublicRoutes([("GET", r"/a"), ("GET|POST", r"/b/.*"), ("*", r"/c")])
    assert routes.is_public("GET", "/a") and routes.is_public("HEAD", "/a")
    assert not routes.is_public("POST", "/a") and not routes.is_public("GET", "/a/x")
    assert routes.is_public("post", "/b/1") and not routes.is_public("PUT", "/b/1")
    assert routes.is_public("DELETE", "/c")


def test_a_public_route_matches_a_path_with_a_newline_in_it():
    """``.`` in a rule covers every character: ``/verify/a%0Ab`` is still the public verify
    route (it used to need a token, because ``.`` stopped at the decoded newline)."""
    routes = PublicRoutes([("GET", r"/api/documents/verify(/.*)?")])
    assert routes.is_public("GET", "/api/documents/verify/a\nb")
    assert not routes.is_public("GET", "/api/documents/other\n")


def test_client_ip_honours_forwarded_only_when_trusted():
    env = {"REMOTE_ADDR": "10.0.0.9", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.7"}
    assert client_ip(env, trust_forwarded=False) == "10.0.0.9"
    assert client_ip(env, trust_forwarded=True) == "203.0.113.7"
    assert client_ip({"REMOTE_ADDR": "10.0.0.9"}, trust_forwarded=True) == "10.0.0.9"


def test_client_ip_reads_every_forwarded_line_in_order():
    """A WSGI server joins the lines with ","; blank entries are skipped."""
    env = {"REMOTE_ADDR": "10.0.0.9", "HTTP_X_FORWARDED_FOR": "6.6.6.6,203.0.113.7, ,"}
    assert client_ip(env, trust_forwarded=True) == "203.0.113.7"


def test_in_process_untrusted_chain_ends_with_the_peer(client, token):
    """Embedded tier: a forged ``X-Forwarded-For`` stays left of the peer (the in-process
    service used to get the client's header unchanged: its right-most hop, the address the
    audit trail records, was whatever the client wrote)."""
    resp = client.get("/api/svc/echo", headers={**auth(token()), "X-Forwarded-For": "6.6.6.6"},
                      environ_base={"REMOTE_ADDR": "198.51.100.4"})
    assert resp.get_json()["forwarded_for"] == "6.6.6.6, 198.51.100.4"
    resp = client.get("/api/svc/echo", headers=auth(token()),
                      environ_base={"REMOTE_ADDR": "198.51.100.4"})
    assert resp.get_json()["forwarded_for"] == "198.51.100.4"


@pytest.mark.parametrize(("lines", "expected"), [
    (["6.6.6.6", "203.0.113.7"], "6.6.6.6, 203.0.113.7"),  # two lines: one list, in order
    (["6.6.6.6, 203.0.113.7,"], "6.6.6.6, 203.0.113.7"),  # a trailing blank is not a hop
    ([], "10.1.2.3"),  # nothing received: the peer decides, and is sent
])
def test_in_process_trusted_chain_ends_with_the_decided_client(build, upstream, token, lines,
                                                              expected):
    """Embedded tier behind our proxy (the peer 10.1.2.3): the service's right-most hop is
    ``routing.client_ip`` (the client's header used to pass unchanged: a trailing comma or no
    header at all left the service without the client's address)."""
    gw = Client(build({"svc": upstream}, trust_forwarded=True))
    headers = [*auth(token()).items(), *(("X-Forwarded-For", line) for line in lines)]
    resp = gw.get("/api/svc/echo", headers=headers, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    seen = resp.get_json()["forwarded_for"]
    assert seen == expected
    decided = client_ip({"REMOTE_ADDR": "10.1.2.3", "HTTP_X_FORWARDED_FOR": ",".join(lines)},
                        trust_forwarded=True)
    assert seen.rpartition(", ")[2] == decided


def test_unknown_service_is_404(client, token):
    body = _problem(client.get("/api/nope/echo", headers=auth(token())), 404)
    assert body["type"].endswith("/not-found")
    _problem(client.get("/not-api"), 404)


def test_a_problems_instance_is_the_path_the_client_sent_non_ascii_included(client, token):
    body = _problem(client.get("/api/nope/案件/(2021)粤01民初8号", headers=auth(token())), 404)
    assert body["instance"] == "/api/nope/案件/(2021)粤01民初8号"
    body = _problem(client.get("/api/nope/%E6%A1%88%FF", headers=auth(token())), 404)  # not UTF-8
    assert body["instance"] == "/api/nope/案\ufffd"


def test_an_unknown_services_name_is_told_as_the_client_wrote_it(client, token):
    """The name in the detail was the path's latin-1 text (``'æ¡\x88ä»¶'`` for ``案件``)."""
    for path in ("/api/案件/x", "/docs/openapi/案件.json"):
        body = _problem(client.get(path, headers=auth(token())), 404)
        assert body["detail"] == "there is no service named '案件'", path


@pytest.mark.parametrize("path", [
    "/api/svc/internal/secret", "/api/svc//internal/secret", "/api/svc/Internal/secret",
    "/api/svc/%69nternal/secret", "/api/svc/internal", "/api/svc/internal;x/secret",
    "/api/svc/%2Finternal/secret",
])
def test_internal_routes_are_never_routed(client, upstream, token, path):
    _problem(client.get(path, headers=auth(token())), 404)
    _problem(client.get(path), 404)
    assert upstream.config["calls"] == []


@pytest.mark.parametrize("path", [
    "/api/svc/metrics", "/api/svc/metrics/", "/api/svc//metrics", "/api/svc/Metrics",
    "/api/svc/%6Detrics", "/api/svc/metrics;x", "/api/svc/%2Fmetrics",
])
def test_service_metrics_are_not_routed_but_probes_and_the_gateways_own_are(
        build, upstream, token, path):
    """A service's /metrics is for Prometheus, which scrapes the service itself: through the
    gateway it answers 404 like /internal, signed in or not, GET or HEAD."""
    upstream.add_url_rule("/metrics", "metrics", lambda: "svc_business_gauge 1\n")
    upstream.add_url_rule("/readyz", "readyz", lambda: {"status": "ready"})
    client = Client(build({"svc": upstream}))
    _problem(client.get(path, headers=auth(token())), 404)
    _problem(client.get(path), 404)
    assert client.head(path, headers=auth(token())).status_code == 404
    assert upstream.config["calls"] == []
    # the probes still pass through, without a token; the gateway's own /metrics is its own
    assert client.get("/api/svc/healthz").status_code == 200
    assert client.get("/api/svc/readyz").get_json() == {"status": "ready"}
    assert upstream.config["calls"] == ["/healthz", "/readyz"]
    own = client.get("/metrics", headers=auth(token()), environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert own.status_code == 200 and "svc_business_gauge" not in own.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/api/svc/echo/../internal/secret", "/api/svc/./echo",
                                  "/api/svc/a/%2e%2e/internal/secret"])
def test_dot_segments_are_refused(client, upstream, token, path):
    _problem(client.get(path, headers=auth(token())), 400)
    assert upstream.config["calls"] == []


def test_request_id_is_kept_when_valid(client, token):
    resp = client.get("/api/svc/echo", headers={**auth(token()), "X-Request-ID": "abc.DEF:1-2_3"})
    assert resp.headers["X-Request-ID"] == "abc.DEF:1-2_3"
    assert resp.get_json()["request_id"] == "abc.DEF:1-2_3"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "<script>", ""])
def test_request_id_is_generated_when_invalid_or_missing(client, token, bad):
    headers = {**auth(token()), **({"X-Request-ID": bad} if bad else {})}
    resp = client.get("/api/svc/echo", headers=headers)
    rid = resp.headers["X-Request-ID"]
    assert GENERATED_ID.match(rid) and resp.get_json()["request_id"] == rid


@pytest.mark.parametrize("bad", ["abc\n", "abc\r\n"])
def test_a_request_id_ending_in_a_line_break_is_replaced(client, token, bad):
    """A server that hands the header on with its line break (a folded line): ``$`` matched
    before the final newline, the id was kept and put back into the answer's headers, and the
    gateway gave no answer at all (werkzeug refuses a header value with a newline)."""
    resp = client.get("/api/svc/echo", headers=auth(token()),
                      environ_overrides={"HTTP_X_REQUEST_ID": bad})
    rid = resp.headers["X-Request-ID"]
    assert resp.status_code == 200
    assert GENERATED_ID.match(rid) and resp.get_json()["request_id"] == rid


def test_request_id_on_every_error(client):
    for resp in (client.get("/api/svc/echo"), client.get("/api/nope/x"),
                 client.get("/api/svc/internal/secret"), client.post("/healthz")):
        assert GENERATED_ID.match(resp.headers["X-Request-ID"])
    resp = client.get("/api/svc/echo", headers={"X-Request-ID": "mine-1"})
    assert resp.status_code == 401 and resp.headers["X-Request-ID"] == "mine-1"


def test_gateway_pages_are_read_only(client):
    body = _problem(client.post("/healthz"), 405)
    assert body["type"].endswith("/method-not-allowed")


def test_in_process_upstream_5xx_passes_through(client, token):
    resp = client.get("/api/svc/fail", headers=auth(token()))
    assert resp.status_code == 503
    assert resp.get_json() == {"upstream": "down for maintenance"}
    assert resp.headers["X-Upstream"] == "yes"
    assert GENERATED_ID.match(resp.headers["X-Request-ID"])


def test_in_process_upstream_raising_is_502(build, token):
    def broken(environ, start_response):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    def broken_late(environ, start_response):  # type: ignore[no-untyped-def]
        raise ValueError("before start_response")
        yield b""

    gw = Client(build({"broken": broken, "late": broken_late}))
    for name in ("broken", "late"):
        body = _problem(gw.get(f"/api/{name}/x", headers=auth(token())), 502)
        assert body["type"].endswith("/bad-gateway")
        assert "boom" not in body.get("detail", "")


def test_in_process_generator_app_with_deferred_start_response(build, token):
    def lazy(environ, start_response):  # type: ignore[no-untyped-def]
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"a")
        yield b"b"
        yield b"c"

    resp = Client(build({"lazy": lazy})).get("/api/lazy/x", headers=auth(token()))
    assert resp.status_code == 200 and resp.data == b"abc"


def test_service_token_from_a_client_is_dropped(client, token):
    resp = client.get("/api/svc/echo", headers={**auth(token()), "X-Service-Token": "guess"})
    assert resp.get_json()["service_token"] is None


def test_access_log_one_line_without_query(client, token, caplog):
    caplog.set_level(logging.INFO, logger="gateway.access")
    client.get("/api/svc/echo?phone=13812345678&q=secret", headers={
        **auth(token()), "X-Request-ID": "log-1"}, buffered=True)
    records = [r for r in caplog.records if r.name == "gateway.access"]
    assert len(records) == 1
    rec = records[0]
    assert (rec.method, rec.path, rec.status, rec.upstream) == ("GET", "/api/svc/echo", 200, "svc")
    assert rec.request_id == "log-1" and rec.duration_ms >= 0
    text = rec.getMessage() + repr(rec.__dict__)
    assert "13812345678" not in text and "secret" not in text


def test_access_log_masks_personal_data_in_paths(client, token, caplog):
    caplog.set_level(logging.INFO, logger="gateway.access")
    client.get("/api/svc/by-phone/13812345678", headers=auth(token()), buffered=True)
    rec = [r for r in caplog.records if r.name == "gateway.access"][0]
    assert rec.path == "/api/svc/by-phone/138****5678"
    assert "13812345678" not in rec.getMessage()


def test_access_log_is_json_lines_with_servicekit_logging(client, token):
    import io
    import json

    from servicekit import logs

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        logs.configure("gateway", stream=stream)
        client.get("/api/svc/echo?x=1", headers={**auth(token()), "X-Request-ID": "json-1"},
                   buffered=True)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "gateway.access"]
    assert len(access) == 1
    assert access[0]["request_id"] == "json-1" and access[0]["path"] == "/api/svc/echo"
    assert access[0]["status"] == 200 and "x=1" not in json.dumps(access[0])


def test_generated_request_ids_are_unique_and_differ_across_forks():
    import multiprocessing
    import re

    from gateway.routing import request_id_from

    ids = {request_id_from("") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[a-z2-7]{16}-[0-9a-f]+", i) for i in ids)
    assert not any(re.search(r"\d{8}", i) for i in ids)  # never reads like an ID or a phone
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        child = pool.apply(request_id_from, ("",))
    assert child[:16] != next(iter(ids))[:16]  # a worker gets its own prefix


@pytest.mark.parametrize("trust", [False, True])
def test_a_service_sees_the_same_forwarded_headers_in_both_tiers(build, serve, upstream, token,
                                                                  trust):
    """In process and over HTTP a service receives the same ``X-Forwarded-For/Proto/Host/
    Prefix`` (``gateway.headers.forwarded_values``), so a link it builds is the same in both
    tiers: the in-process tier set no Proto, Host or Prefix and passed the client's own."""
    live = serve(make_upstream())
    headers = [*auth(token()).items(), ("Host", "gw.court:8080"),
               ("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.7"),
               ("X-Forwarded-Proto", "ftp"), ("X-Forwarded-Proto", "https"),
               ("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Host", "portal.court"),
               ("X-Forwarded-Prefix", "/forged")]
    fields = ("forwarded_for", "forwarded_proto", "forwarded_host", "forwarded_prefix")
    seen = {}
    for tier, target in (("in process", upstream), ("http", live.url)):
        gw = Client(build({"svc": target}, trust_forwarded=trust))
        resp = gw.get("/api/svc/echo", headers=headers, environ_base={"REMOTE_ADDR": "10.1.2.3"})
        assert resp.status_code == 200, tier
        seen[tier] = tuple(resp.get_json()[f] for f in fields)
    expected = (("6.6.6.6, 203.0.113.7", "https", "portal.court", "/api/svc") if trust else
                ("6.6.6.6, 203.0.113.7, 10.1.2.3", "http", "gw.court:8080", "/api/svc"))
    assert seen == {"in process": expected, "http": expected}


def test_the_issuance_logs_head_is_public_and_nothing_next_to_it():
    """A witness pins the documents' issuance log without an account (``/ledger``,
    ``/ledger/<seq>``); the rest of documents still needs a token."""
    from gateway.routing import DEFAULT_PUBLIC_ROUTES

    routes = PublicRoutes(DEFAULT_PUBLIC_ROUTES)
    assert routes.is_public("GET", "/api/documents/ledger")
    assert routes.is_public("GET", "/api/documents/ledger/42")
    assert not routes.is_public("POST", "/api/documents/ledger")
    assert not routes.is_public("GET", "/api/documents/ledger/42/x")
    assert not routes.is_public("GET", "/api/documents/ledgers")
    assert not routes.is_public("GET", "/api/documents/documents")
