"""documents's signed-in routes: the seal registry and downloads. Thin views over usecases."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from flask_smorest.pagination import PaginationParameters

from servicekit import roles as r
from servicekit.access import current_claims, roles
from servicekit.paging import paginated
from servicekit.service import runtime
from servicekit.versions import Precondition, documented, etag_header
from services.documents import usecases
from services.documents.config import documents_of
from services.documents.models import Document, Seal
from services.documents.schemas import (
    DocumentListSchema,
    DocumentQuerySchema,
    DocumentSchema,
    SealSchema,
)

blp = Blueprint("documents", __name__, description="Seals and issued documents")
STAFF = tuple(sorted(r.STAFF_ROLES))
PDF_RESPONSE = {"200": {"description": "the PDF exactly as issued",
                        "content": {"application/pdf": {"schema": {"type": "string",
                                                                   "format": "binary"}}}}}


def _view(doc: Document) -> dict[str, Any]:
    return usecases.document_view(doc, documents_of(runtime()).settings.verify_url(doc.code))


def _with_etag(seal: Seal, status: int = 200) -> tuple[Seal, int, dict[str, str]]:
    return seal, status, etag_header(usecases.seal_etag(seal))


@blp.route("/seals")
class Seals(MethodView):
    @roles(r.COURT_ADMIN)
    @documented(blp, "seal", create=True)
    @blp.arguments(SealSchema)
    @blp.response(200, SealSchema)
    @blp.alt_response(201, schema=SealSchema, description="registered for the first time")
    def post(self, body: dict[str, str]) -> tuple[Seal, int, dict[str, str]]:
        """Register (or replace) my court's special-purpose seal.

        The first registration needs no precondition (`If-None-Match: *`: create only, 412 if
        a seal exists); a replace needs the seal's `ETag` in `If-Match` (428 without it, 412
        if the seal changed since it was read).
        """
        seal, created = usecases.upsert_seal(runtime().db, current_claims(), body,
                                             Precondition.of_request())
        return _with_etag(seal, 201 if created else 200)


@blp.route("/seals/<court>")
class SealOfCourt(MethodView):
    @roles(*STAFF)
    @blp.response(200, SealSchema)
    def get(self, court: str) -> tuple[Seal, int, dict[str, str]]:
        """The seal registered for a court (its own staff only)."""
        return _with_etag(usecases.get_seal(runtime().db, current_claims(), court))


@blp.route("/documents")
class Documents(MethodView):
    @roles(*STAFF)
    @blp.arguments(DocumentQuerySchema, location="query")
    @blp.response(200, DocumentListSchema)
    @paginated(blp)
    def get(self, query: dict[str, str],
            pagination_parameters: PaginationParameters) -> dict[str, Any]:
        """The documents of an application of my court (staff), newest first.

        A page at a time (``X-Pagination``): every reissue leaves a revoked document behind.
        """
        docs = usecases.documents_of_application(runtime().db, current_claims(),
                                                 query["application_id"], pagination_parameters)
        return {"items": [_view(d) for d in docs]}


@blp.route("/documents/<document_id>")
class DocumentOne(MethodView):
    @roles()
    @blp.response(200, DocumentSchema)
    def get(self, document_id: str) -> dict[str, Any]:
        """A document's metadata: staff of its court, or its viewers once published."""
        return _view(usecases.readable_document(runtime().db, current_claims(), document_id))


@blp.route("/documents/<document_id>/pdf")
class DocumentPdf(MethodView):
    @roles()
    @blp.doc(responses=PDF_RESPONSE)
    def get(self, document_id: str) -> Response:
        """The PDF, byte for byte as issued (its SHA-256 is in the metadata)."""
        doc, data = usecases.document_pdf(runtime().db, documents_of(runtime()).blobs,
                                          current_claims(), document_id)
        resp = Response(data, content_type="application/pdf")
        resp.headers["Content-Disposition"] = f'inline; filename="{doc.kind}-{doc.id}.pdf"'
        resp.headers["ETag"] = f'"{doc.sha256}"'
        resp.headers["Cache-Control"] = "private, no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp
