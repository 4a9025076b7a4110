"""matters' event handlers: the certificate's outcome reported by documents, and the
lawyers identity verified."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from servicekit.consumer import Handler
from servicekit.envelope import CloudEvent
from servicekit.service import Runtime
from services.matters.domain import DOC_FAILED, DOC_GENERATING, DOC_ISSUED
from services.matters.lawyers import on_lawyer_verified
from services.matters.models import Application


def on_document_issued(session: Session, event: CloudEvent) -> None:
    """Record the certificate. Documents never issues two valid ones for an application, so
    an issued document is recorded whichever request it answers."""
    app = session.get(Application, event.data["application_id"], with_for_update=True)
    if app is None or app.document_state == DOC_ISSUED:
        return
    app.document_state = DOC_ISSUED
    app.document_id = event.data["document_id"]
    app.document_code = event.data["code"]
    app.document_failure = None
    app.version += 1


def on_render_failed(session: Session, event: CloudEvent) -> None:
    """Show "generation failed" — only for the attempt still awaited (a stale failure of an
    earlier attempt must not hide a later success)."""
    app = session.get(Application, event.data["application_id"], with_for_update=True)
    if app is None or app.document_state != DOC_GENERATING:
        return
    if app.document_request_id != event.data["request_id"]:
        return
    app.document_state = DOC_FAILED
    app.document_failure = event.data["reason"][:500]
    app.version += 1


def build_handlers(_rt: Runtime) -> Mapping[str, Handler]:
    return {"documents.document.issued": on_document_issued,
            "documents.render.failed": on_render_failed,
            "identity.lawyer.verified": on_lawyer_verified}
