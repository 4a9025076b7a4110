"""documents's event handlers: one function per consumed event type."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from servicekit.consumer import Handler
from servicekit.envelope import CloudEvent
from servicekit.service import Runtime
from services.documents import issuance
from services.documents.config import documents_of

CONSUMES = ("matters.certificate.requested", "matters.application.completed")


def build_handlers(rt: Runtime) -> Mapping[str, Handler]:
    docs = documents_of(rt)
    docs.renderer  # noqa: B018 - load the font now: a consumer without one must not start

    def on_certificate_requested(session: Session, event: CloudEvent) -> None:
        issuance.on_certificate_requested(session, event, docs)

    return {"matters.certificate.requested": on_certificate_requested,
            "matters.application.completed": issuance.on_application_completed}
