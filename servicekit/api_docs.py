"""What every route's hooks do, written into its OpenAPI operation.

``create_service_app`` wraps each view in the same checks: the caller's access rule
(``servicekit.access``), ``Idempotency-Key`` on unsafe methods (``servicekit.idempotency``), a
503 when the database or the signing keys cannot be reached, and a 415 for a body of a media
type the operation's ``requestBody`` does not name (``servicekit.media_types``). None of that is
in a view's own marshmallow schemas, so a client generated from the spec would not know to send
a token, could not find the idempotency header, and would meet 401/403/503 only as "a problem".
This apispec plugin adds them to every operation from the very markers the hooks enforce, so the
documents cannot say one thing while the hooks do another (and the 415's hook takes the body's
media types from the document itself).
"""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin
from flask import Flask

from servicekit import media_types
from servicekit.access import access_of
from servicekit.idempotency import MAX_KEY_LENGTH, stores_answers

#: the security schemes the operations name (``install_security_schemes``)
BEARER = "bearer"
SERVICE_TOKEN = "serviceToken"  # noqa: S105 - a scheme name, not a secret

IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
    "description": (
        "Any unique string (a UUID is best). Sending the same request again with the same key "
        "within a day returns the first answer, marked `Idempotent-Replayed: true`, instead of "
        "acting twice. The same key with another body is refused (422 "
        "`idempotency-key-reused`); while the first request runs, a repeat gets 409. A "
        "refusal (4xx) or a server error that changed nothing is not kept, nor a 429: mend "
        "the request (or wait for Retry-After) and send it again with the same key."),
}

RETRY_AFTER = {
    "description": "seconds to wait before trying again",
    "schema": {"type": "integer", "minimum": 1},
}


def install_security_schemes(spec: Any, token_header: str) -> None:
    """The two ways a caller proves who it is: a user's access token, or a service's secret."""
    spec.components.security_scheme(
        BEARER, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                 "description": "an access token from `POST /api/identity/tokens`"})
    spec.components.security_scheme(
        SERVICE_TOKEN, {"type": "apiKey", "in": "header", "name": token_header,
                        "description": "the services' shared secret: service-to-service "
                                       "calls only, never routed by the gateway"})


class HookDocs(BasePlugin):
    """apispec plugin: each operation gets its access rule, ``Idempotency-Key`` and 503, and
    one that takes a body its 415; the media types of that body are noted for the hook that
    refuses the others (``servicekit.media_types``)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def operation_helper(self, path: str | None = None,
                         operations: dict[str, Any] | None = None, **kwargs: Any) -> None:
        rule = kwargs.get("rule")
        if rule is None or not operations:
            return
        view = self.app.view_functions[rule.endpoint]
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            _document_access(operation, responses, access_of(view, method))
            if stores_answers(view, method):
                operation.setdefault("parameters", []).append(dict(IDEMPOTENCY_KEY))
                responses.setdefault("409", "CONFLICT")
                responses.setdefault("422", "UNPROCESSABLE_ENTITY")
            # the database or the signing keys out of reach: database-unavailable,
            # keys-unavailable (and a route's own 503s, already documented by the route)
            responses.setdefault("503", "SERVICE_UNAVAILABLE")
            types = media_types.remember(self.app.extensions, rule.endpoint, method, operation)
            if types:  # the route's own 415, if any, is keyed by the number
                own = responses.pop(415, None) or responses.get("415")
                responses["415"] = media_types.documented(method, types, own)


def _document_access(operation: dict[str, Any], responses: dict[str, Any],
                     access: Any) -> None:
    if access is None or access.kind == "public":
        return
    if access.kind == "internal":
        operation["security"] = [{SERVICE_TOKEN: []}]
        responses.setdefault("403", "FORBIDDEN")
        _add_description(operation, "For other services only (the service secret).")
        return
    operation["security"] = [{BEARER: []}]
    responses.setdefault("401", "UNAUTHORIZED")
    if access.roles:
        responses.setdefault("403", "FORBIDDEN")
        _add_description(operation, "Roles allowed: " + ", ".join(
            f"`{role}`" for role in sorted(access.roles)) + ".")
    else:
        _add_description(operation, "Any signed-in caller.")


def _add_description(operation: dict[str, Any], text: str) -> None:
    current = operation.get("description")
    operation["description"] = f"{current}\n\n{text}" if current else text
