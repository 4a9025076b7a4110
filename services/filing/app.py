"""filing's app factory and service definition."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from servicekit.service import Runtime, ServiceDefinition
from servicekit.web import ServiceSpec, create_service_app
from services.filing.models import Base


def create_app(rt: Runtime) -> Flask:
    spec = ServiceSpec(
        "filing", "eCourt filing",
        "Online filing applications, registry review, docketing and case numbers.",
        [],
    )
    return create_service_app(spec, rt)


SERVICE = ServiceDefinition(name="filing", metadata=Base.metadata,
                            migrations=Path(__file__).parent / "migrations",
                            build_app=create_app)
