"""bankruptcy's app factory and service definition."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from servicekit.service import Runtime, ServiceDefinition
from servicekit.web import ServiceSpec, create_service_app
from services.bankruptcy.models import Base


def create_app(rt: Runtime) -> Flask:
    spec = ServiceSpec(
        "bankruptcy", "eCourt bankruptcy",
        "Bankruptcy cases: administrator nodes, creditor claims, meetings and votes.",
        [],
    )
    return create_service_app(spec, rt)


SERVICE = ServiceDefinition(name="bankruptcy", metadata=Base.metadata,
                            migrations=Path(__file__).parent / "migrations",
                            build_app=create_app)
