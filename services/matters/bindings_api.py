"""matters' routes for lawyer–case binding and the verified-lawyer list: thin views over
bindings.py and lawyers.py."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from flask_smorest.pagination import PaginationParameters

from servicekit.access import current_claims, roles
from servicekit.paging import paginated
from servicekit.roles import CLERK, JUDGE, LAWYER
from servicekit.service import runtime
from servicekit.uploads import SIGNATURES, read_upload
from servicekit.versions import Precondition, documented
from services.matters import bindings, lawyers
from services.matters.api import COURT_STAFF, with_etag
from services.matters.schemas import (
    BindingArgsSchema,
    BindingListSchema,
    BindingRequestSchema,
    BindingSchema,
    DirectBindingSchema,
    LawyerArgsSchema,
    LawyerListSchema,
    RejectSchema,
)
from services.matters.views import binding_view

blp = Blueprint("matters-bindings", __name__, url_prefix="",
                description="Lawyer–case binding (律师案件绑定) and verified lawyers")


def _out(found: tuple[Any, Any], status: int = 200):  # type: ignore[no-untyped-def]
    body, _, headers = with_etag(binding_view(*found, current_claims()))
    return body, status, headers


@blp.route("/bindings")
class Bindings(MethodView):
    @roles(LAWYER)
    @blp.arguments(BindingRequestSchema, location="files")
    @blp.response(201, BindingSchema)
    @blp.alt_response(404, description="no case with this number has a party of this name")
    @blp.alt_response(413, description="the letter is larger than 20 MB")
    @blp.alt_response(415, description="the letter is not an image or a PDF")
    def post(self, form: dict[str, Any]):  # type: ignore[no-untyped-def]
        """A verified lawyer asks to be bound to a party of a case, with the letter of
        authorisation; the presiding judge and the clerk are told at once."""
        letter = read_upload(form.get("letter"), field="letter")
        return _out(bindings.request(runtime().db, bindings.blob_store(runtime()),
                                     current_claims(), form, letter), 201)

    @roles(LAWYER, *COURT_STAFF)
    @blp.arguments(BindingArgsSchema, location="query")
    @blp.response(200, BindingListSchema)
    @paginated(blp)
    def get(self, args: dict[str, Any],
            pagination_parameters: PaginationParameters) -> dict[str, Any]:
        """Staff: the court's binding requests (``status=pending`` is the to-do, with the
        remaining days). A lawyer: their own requests.

        The oldest deadline first, a page at a time (``X-Pagination``); ``total``: every
        request on all pages.
        """
        claims, page = current_claims(), pagination_parameters
        rows = [binding_view(b, c, claims)
                for b, c in bindings.listing(runtime().db, claims, args, page)]
        return {"items": rows, "total": page.item_count}


@blp.route("/bindings/<binding_id>")
class OneBinding(MethodView):
    @roles(LAWYER, *COURT_STAFF)
    @blp.response(200, BindingSchema)
    def get(self, binding_id: str):  # type: ignore[no-untyped-def]
        """A binding request, to its court's staff and to the lawyer who made it."""
        return _out(bindings.get(runtime().db, current_claims(), binding_id))


#: the letter comes back as uploaded: one of the upload checker's types (servicekit.uploads)
_LETTER_DOC = {"200": {"description": "the letter, with the type it was uploaded as",
                       "content": {media: {"schema": {"type": "string", "format": "binary"}}
                                   for _, media in SIGNATURES.values()}}}


@blp.route("/bindings/<binding_id>/letter")
class BindingLetter(MethodView):
    @roles(LAWYER, *COURT_STAFF)
    @blp.doc(responses=_LETTER_DOC)
    @blp.response(200, content_type="application/octet-stream")
    def get(self, binding_id: str) -> Response:
        """The letter of authorisation, as uploaded."""
        binding, data = bindings.letter(runtime().db, bindings.blob_store(runtime()),
                                        current_claims(), binding_id)
        return Response(data, content_type=binding.letter_content_type,
                        headers={"Content-Disposition": "attachment",
                                 "X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "private, no-store"})


@blp.route("/bindings/<binding_id>/approve")
class Approve(MethodView):
    @roles(JUDGE, CLERK)
    @documented(blp, "binding request")
    @blp.response(200, BindingSchema)
    def post(self, binding_id: str):  # type: ignore[no-untyped-def]
        """The case's presiding judge or clerk approves: the lawyer now sees the case."""
        return _out(bindings.approve(runtime().db, current_claims(), binding_id,
                                     Precondition.of_request()))


@blp.route("/bindings/<binding_id>/reject")
class Reject(MethodView):
    @roles(JUDGE, CLERK)
    @documented(blp, "binding request")
    @blp.arguments(RejectSchema)
    @blp.response(200, BindingSchema)
    def post(self, body: dict[str, Any], binding_id: str):  # type: ignore[no-untyped-def]
        """The case's presiding judge or clerk rejects, with the reason the lawyer is told."""
        return _out(bindings.reject(runtime().db, current_claims(), binding_id,
                                    body["reason"], Precondition.of_request()))


@blp.route("/cases/<case_id>/lawyers")
class CaseLawyers(MethodView):
    @roles(CLERK)
    @blp.arguments(DirectBindingSchema)
    @blp.response(201, BindingSchema)
    def post(self, body: dict[str, Any], case_id: str):  # type: ignore[no-untyped-def]
        """The clerk binds a verified lawyer to a party directly (approved at once)."""
        return _out(bindings.bind_directly(runtime().db, current_claims(), case_id, body), 201)


@blp.route("/lawyers")
class Lawyers(MethodView):
    @roles(*COURT_STAFF)
    @blp.arguments(LawyerArgsSchema, location="query")
    @blp.response(200, LawyerListSchema)
    @paginated(blp)
    def get(self, args: dict[str, Any],
            pagination_parameters: PaginationParameters) -> dict[str, Any]:
        """Verified lawyers, by name, law firm or licence number (the clerk's 律 list).

        In name order, a page at a time (``X-Pagination``); ``total``: every match on all
        pages.
        """
        page = pagination_parameters
        found = lawyers.search(runtime().db, current_claims(), args.get("q"), page)
        return {"items": found, "total": page.item_count}
