"""matters' app factory and service definition."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from servicekit.service import Runtime, ServiceDefinition
from servicekit.web import ServiceSpec, create_service_app
from services.matters.api import blp
from services.matters.bindings import blob_store
from services.matters.bindings_api import blp as bindings_blp
from services.matters.escalation import OverdueCollector
from services.matters.handlers import build_handlers
from services.matters.models import Base


def create_app(rt: Runtime) -> Flask:
    spec = ServiceSpec(
        "matters", "eCourt matters",
        "The case space: parties, lawyers, applications during a case, deadlines, escalation.",
        [blp, bindings_blp], collectors=[OverdueCollector(rt.db)],
    )
    return create_service_app(spec, rt)


SERVICE = ServiceDefinition(name="matters", metadata=Base.metadata,
                            migrations=Path(__file__).parent / "migrations",
                            build_app=create_app, build_handlers=build_handlers,
                            consumes=("documents.document.issued", "documents.render.failed",
                                      "identity.lawyer.verified"),
                            blob_store=blob_store,  # type: ignore[arg-type]
                            blob_columns=("bindings.letter_sha256",))
