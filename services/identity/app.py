"""identity's app factory and service definition."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from servicekit.service import Runtime, ServiceDefinition
from servicekit.web import ServiceSpec, create_service_app
from services.identity.api import blp
from services.identity.keys import load_signing_key
from services.identity.models import Base


def create_app(rt: Runtime) -> Flask:
    rt.extras.setdefault("signing_key", load_signing_key())
    spec = ServiceSpec("identity", "eCourt identity",
                       "Accounts, real-name details, sign-in and access tokens (JWKS).", [blp])
    return create_service_app(spec, rt)


SERVICE = ServiceDefinition(name="identity", metadata=Base.metadata,
                            migrations=Path(__file__).parent / "migrations",
                            build_app=create_app)
