"""delivery's app factory and service definition."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from servicekit.service import Runtime, ServiceDefinition
from servicekit.web import ServiceSpec, create_service_app
from services.delivery.api import blp
from services.delivery.handlers import build_handlers
from services.delivery.models import Base


def create_app(rt: Runtime) -> Flask:
    spec = ServiceSpec("delivery", "eCourt delivery",
                       "Electronic service of documents and the notification hub.", [blp])
    return create_service_app(spec, rt)


CONSUMES = ("identity.account.registered", "identity.code.issued", "matters.application.submitted",
            "matters.application.transferred", "matters.application.completed",
            "matters.application.overdue", "matters.binding.requested",
            "matters.binding.approved", "matters.binding.rejected",
            "identity.organization.registered", "identity.organization.approved",
            "identity.organization.rejected", "identity.lawyer.verification_requested",
            "identity.lawyer.verified",
            "identity.lawyer.rejected")

SERVICE = ServiceDefinition(name="delivery", metadata=Base.metadata,
                            migrations=Path(__file__).parent / "migrations",
                            build_app=create_app, build_handlers=build_handlers,
                            consumes=CONSUMES)
