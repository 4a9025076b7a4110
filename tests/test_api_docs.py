"""The OpenAPI documents say what every route's hooks do, and the routes do what they say.

``servicekit.api_docs`` writes each operation's access rule (security scheme, 401/403), the
``Idempotency-Key`` header of unsafe methods, the 503 of an unreachable database and the 415 of
a body of another media type than the operation takes into the spec from the markers the hooks
enforce; the gateway adds its own 429/502/504 when it serves the documents at ``/docs``. These
tests hold the committed documents (``contracts/openapi``, equal to the code by
``test_contracts``) against the markers, and then call every protected operation the way a
client reading the document would, without the token it asks for.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from flask import Flask
from werkzeug.test import Client

from ecourt.contracts import OPENAPI
from servicekit.access import access_of
from servicekit.idempotency import stores_answers
from tests.harness import person

_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_FRAMEWORK = ("static", "api-docs.", "health.")


def _spec(service: str) -> dict[str, Any]:
    return json.loads((OPENAPI / f"{service}.json").read_text(encoding="utf-8"))


def _operations(app: Flask) -> Iterator[tuple[str, str, Callable[..., Any]]]:
    """(OpenAPI path, method, view) of every documented route of ``app``."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(_FRAMEWORK):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield _PARAM.sub(r"{\1}", rule.rule), method, app.view_functions[rule.endpoint]


def test_every_operation_documents_its_access_idempotency_and_503(embedded) -> None:  # type: ignore[no-untyped-def]
    checked = 0
    for service, app in embedded.apps.items():
        spec = _spec(service)
        schemes = spec["components"]["securitySchemes"]
        assert schemes["bearer"]["scheme"] == "bearer"
        assert schemes["serviceToken"] == {**schemes["serviceToken"], "type": "apiKey",
                                           "in": "header", "name": "X-Service-Token"}
        if spec["paths"]:  # filing and bankruptcy have no routes yet
            unavailable = spec["components"]["responses"]["SERVICE_UNAVAILABLE"]
            assert "Retry-After" in unavailable["headers"]
        for path, method, view in _operations(app):
            access = access_of(view, method)
            operation = spec["paths"][path][method.lower()]
            where = f"{service}: {method} {path}"
            responses = operation["responses"]
            assert access is not None, where
            if access.kind == "public":
                assert "security" not in operation, where
            elif access.kind == "internal":
                assert operation["security"] == [{"serviceToken": []}], where
                assert "403" in responses, where
            else:
                assert operation["security"] == [{"bearer": []}], where
                assert "401" in responses, where
                assert ("403" in responses) == bool(access.roles), where
                for role in access.roles:
                    assert f"`{role}`" in operation["description"], where
            names = {p["name"] for p in operation.get("parameters", ()) if p["in"] == "header"}
            assert ("Idempotency-Key" in names) == stores_answers(view, method), where
            assert "503" in responses, where
            # a body of another media type than its requestBody names: 415, with the hint
            if "requestBody" in operation:
                assert "415" in responses, where
                if method == "POST":
                    assert "Accept-Post" in responses["415"]["headers"], where
            checked += 1
    assert checked > 50  # every service's routes, not an empty walk
    # sign-in answers are live tokens: the key is ignored there, and the document says none
    identity = _spec("identity")["paths"]
    assert not identity["/tokens"]["post"].get("parameters")
    assert "Idempotency-Key" in {p["name"] for p in identity["/accounts"]["post"]["parameters"]}


def _concrete(path: str, spec_operation: dict[str, Any], item: dict[str, Any]) -> str:
    """``path`` with each parameter filled by a value of its documented type."""
    params = {p["name"]: p.get("schema", {}) for p in
              [*item.get("parameters", ()), *spec_operation.get("parameters", ())]
              if p["in"] == "path"}

    def value(match: re.Match[str]) -> str:
        schema = params.get(match.group(1), {})
        if schema.get("format") == "uuid":
            return str(uuid.uuid4())
        if schema.get("type") == "integer":
            return "1"
        return "x" * max(schema.get("minLength", 1), 1)

    return re.sub(r"\{([^}]+)\}", value, path)


def test_every_protected_operation_refuses_what_its_document_says(embedded) -> None:  # type: ignore[no-untyped-def]
    """Without the token the document asks for: 401 through the gateway and at the service
    itself; with a token of a role the document does not list: 403."""
    gateway = Client(embedded.gateway)
    _, party = person(gateway, "林文")
    refused = 0
    for service, app in embedded.apps.items():
        spec, direct = _spec(service), app.test_client()
        for path, method, view in _operations(app):
            access = access_of(view, method)
            if access is None or access.kind != "roles":
                continue
            item = spec["paths"][path]
            url = _concrete(path, item[method.lower()], item)
            where = f"{service}: {method} {url}"
            for client, prefix in ((gateway, f"/api/{service}"), (direct, "")):
                resp = client.open(prefix + url, method=method)
                assert resp.status_code == 401, where
                assert resp.mimetype == "application/problem+json", where
            if access.roles and "party" not in access.roles:
                resp = gateway.open(f"/api/{service}{url}", method=method,
                                    headers={"Authorization": f"Bearer {party}"})
                assert resp.status_code == 403, where
            refused += 1
    assert refused > 30


def test_the_gateway_documents_its_own_answers_on_every_operation(embedded) -> None:  # type: ignore[no-untyped-def]
    gateway = Client(embedded.gateway)
    spec = gateway.get("/docs/openapi/identity.json").get_json()
    limited = spec["components"]["responses"]["GATEWAY_RATE_LIMITED"]
    assert "Retry-After" in limited["headers"]
    operations = [op for item in spec["paths"].values() for op in item.values()
                  if isinstance(op, dict) and "responses" in op]
    assert operations
    for operation in operations:
        assert {"429", "502", "504"} <= set(operation["responses"])
    # a route's own 429 (sign-in throttling) keeps its own description
    own = spec["paths"]["/tokens"]["post"]["responses"]["429"]
    assert "failed attempts" in own["description"]
