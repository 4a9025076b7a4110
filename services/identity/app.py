"""identity's app factory and service definition.

Environment read here: ``IDENTITY_SIGNING_KEY_FILE`` (see ``keys.py``) and
``IDENTITY_TRUST_FORWARDED=1`` (take the client address for login throttling from the last
``X-Forwarded-For`` hop; set it only when identity is reachable solely through the gateway).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask

from servicekit.service import Runtime, ServiceDefinition
from servicekit.web import ServiceSpec, create_service_app
from services.identity import api, lawyers_api, organizations_api, signin_api, staff_api
from services.identity.keys import load_signing_key
from services.identity.models import Base

#: routes whose answers are live credentials: an ``Idempotency-Key`` is accepted but no answer
#: is stored (the kit would keep the tokens in clear in ``idempotency_keys``). A retried login
#: simply signs in again; a retried refresh presents a used token and ends the sign-in.
TOKEN_PATHS = frozenset({"/tokens", "/tokens/refresh", "/tokens/revoke", "/tokens/sms",
                         "/qr-tickets"})

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _no_stored_answers_for_tokens(wsgi_app: WSGIApp) -> WSGIApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").rstrip("/") in TOKEN_PATHS:
            environ.pop("HTTP_IDEMPOTENCY_KEY", None)
        return wsgi_app(environ, start_response)
    return app


def create_app(rt: Runtime) -> Flask:
    rt.extras.setdefault("signing_key", load_signing_key())
    rt.extras.setdefault("trust_forwarded", api.trust_forwarded_from_env())
    spec = ServiceSpec("identity", "eCourt identity",
                       "Accounts, real-name details, court staff, sign-in and access tokens "
                       "(JWKS).", [api.blp, staff_api.blp,
                        organizations_api.blp, lawyers_api.blp,
                        signin_api.blp])
    app = create_service_app(spec, rt)
    app.wsgi_app = _no_stored_answers_for_tokens(app.wsgi_app)  # type: ignore[method-assign]
    return app


SERVICE = ServiceDefinition(name="identity", metadata=Base.metadata,
                            migrations=Path(__file__).parent / "migrations",
                            build_app=create_app)
