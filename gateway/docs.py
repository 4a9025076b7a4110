"""The OpenAPI front door: an offline HTML index and each service's document, re-based.

No Swagger UI or ReDoc from a CDN (the suite must work offline and a court network may forbid
third-party scripts): ``/docs`` is plain HTML listing every service with a link to its OpenAPI
JSON. ``/docs/openapi/<service>.json`` fetches the service's ``/openapi.json`` (in process or over
HTTP) and rewrites ``servers`` to ``[{"url": "/api/<service>"}]`` so tools call it through the
gateway, and adds the gateway's own answers to every operation (``GATEWAY_RESPONSES``): a
client reading the re-based document meets no status the document does not name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from html import escape
from typing import Any, Protocol

from servicekit.api_docs import RETRY_AFTER

#: what the gateway itself may answer for any routed request (``gateway.app``)
GATEWAY_RESPONSES: dict[str, tuple[str, str, bool]] = {
    "429": ("GATEWAY_RATE_LIMITED", "too many requests from this client (rate-limited)", True),
    "502": ("GATEWAY_BAD_GATEWAY", "the service could not be reached or failed", False),
    "504": ("GATEWAY_TIMEOUT", "the service did not answer in time", False),
}


class DocsSource(Protocol):
    def get(self, path: str, request_id: str) -> tuple[int, bytes]: ...


class OpenApiUnavailable(Exception):
    """The service answered, but not with an OpenAPI document."""


def render_index(services: Iterable[str], script_name: str = "") -> str:
    base = script_name.rstrip("/")
    rows = []
    for name in sorted(services):
        n = escape(name)
        doc = f"{escape(base)}/docs/openapi/{n}.json"
        api = f"{escape(base)}/api/{n}/"
        rows.append(f'<tr><td>{n}</td><td><code>{api}</code></td>'
                    f'<td><a href="{doc}">{doc}</a></td></tr>')
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>eCourt API</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em 1em;"
        "text-align:left}</style></head><body>\n"
        "<h1>eCourt API</h1>\n"
        "<p>Every service is served under <code>/api/&lt;service&gt;/</code>. "
        "Send <code>Authorization: Bearer &lt;token&gt;</code> (from "
        "<code>POST /api/identity/tokens</code>) on protected routes. Errors are "
        "<code>application/problem+json</code> (RFC 9457).</p>\n"
        "<table><thead><tr><th>service</th><th>base path</th><th>OpenAPI (JSON)</th></tr>"
        "</thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n</body></html>\n"
    )


def rebased_openapi(source: DocsSource, service: str, request_id: str) -> dict[str, Any]:
    """Fetch ``/openapi.json`` from the service and point its ``servers`` at the gateway.

    Raises ``OpenApiUnavailable`` (and the upstream errors of ``gateway.upstream``)."""
    status, body = source.get("/openapi.json", request_id)
    if status != 200:
        raise OpenApiUnavailable(f"the {service} service answered {status} for its OpenAPI")
    try:
        spec = json.loads(body)
    except ValueError as exc:
        raise OpenApiUnavailable(f"the {service} service sent an invalid OpenAPI") from exc
    if not isinstance(spec, dict):
        raise OpenApiUnavailable(f"the {service} service sent an invalid OpenAPI")
    spec["servers"] = [{"url": f"/api/{service}"}]
    _add_gateway_responses(spec)
    return spec


def _add_gateway_responses(spec: dict[str, Any]) -> None:
    """Name the gateway's 429/502/504 on every operation (a route's own 429 stays its own)."""
    components = spec.setdefault("components", {})
    schemas = components.get("schemas", {})
    problem = ({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
               if "Problem" in schemas else {"application/problem+json": {}})
    responses = components.setdefault("responses", {})
    for name, description, retry in GATEWAY_RESPONSES.values():
        response: dict[str, Any] = {"description": description, "content": problem}
        if retry:
            response["headers"] = {"Retry-After": RETRY_AFTER}
        responses.setdefault(name, response)
    for item in (spec.get("paths") or {}).values():
        for operation in item.values() if isinstance(item, dict) else ():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, (name, _, _) in GATEWAY_RESPONSES.items():
                operation["responses"].setdefault(
                    status, {"$ref": f"#/components/responses/{name}"})
