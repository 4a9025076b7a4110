"""documents's app factory and service definition."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from servicekit.service import Runtime, ServiceDefinition
from servicekit.web import ServiceSpec, create_service_app
from services.documents.models import Base


def create_app(rt: Runtime) -> Flask:
    spec = ServiceSpec(
        "documents", "eCourt documents",
        "Court documents: rendering, anti-counterfeit codes, seals, hashes, verification.",
        [],
    )
    return create_service_app(spec, rt)


SERVICE = ServiceDefinition(name="documents", metadata=Base.metadata,
                            migrations=Path(__file__).parent / "migrations",
                            build_app=create_app)
