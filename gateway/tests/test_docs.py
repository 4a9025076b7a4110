"""The OpenAPI front door."""

from __future__ import annotations

from werkzeug.test import Client

from gateway.tests.conftest import make_upstream


def test_docs_index_lists_services_with_links(build, upstream):
    gw = Client(build({"identity": upstream, "matters": make_upstream("matters")}))
    resp = gw.get("/docs")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    for name in ("identity", "matters"):
        assert f'href="/docs/openapi/{name}.json"' in html
        assert f"/api/{name}/" in html
    assert "cdn" not in html.lower() and "<script" not in html.lower()
    assert resp.headers["X-Request-ID"]


def test_openapi_in_process_is_rebased(build, upstream):
    gw = Client(build({"svc": upstream}))
    resp = gw.get("/docs/openapi/svc.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    spec = resp.get_json()
    assert spec["servers"] == [{"url": "/api/svc"}]
    assert spec["paths"] == {"/echo": {}}


def test_openapi_over_http_is_rebased(build, serve):
    live = serve(make_upstream())
    spec = Client(build({"svc": live.url})).get("/docs/openapi/svc.json").get_json()
    assert spec["servers"] == [{"url": "/api/svc"}]


def test_openapi_unknown_service_and_broken_upstreams(build):
    def no_spec(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("404 NOT FOUND", [("Content-Type", "text/plain")])
        return [b"nope"]

    gw = Client(build({"nospec": no_spec, "down": "http://127.0.0.1:1"}))
    resp = gw.get("/docs/openapi/unknown.json")
    assert resp.status_code == 404 and resp.mimetype == "application/problem+json"
    resp = gw.get("/docs/openapi/nospec.json")
    assert resp.status_code == 502 and resp.mimetype == "application/problem+json"
    resp = gw.get("/docs/openapi/down.json")
    assert resp.status_code == 502 and resp.mimetype == "application/problem+json"
