"""identity's HTTP routes for lawyer verification: the applicant's (online by JSON, offline by
multipart with the certificate and ID-card scans) and the chosen court's reviewers'."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint
from flask_smorest.pagination import PaginationParameters
from marshmallow import Schema, ValidationError, fields, validate

from servicekit.access import roles
from servicekit.paging import paginated
from servicekit.problems import Problem
from servicekit.roles import PARTY
from servicekit.service import runtime
from servicekit.uploads import read_upload
from servicekit.versions import Precondition, documented
from services.identity import lawyers
from services.identity import organizations_domain as rules
from services.identity.models_orgs import LawyerVerification
from services.identity.organizations_api import REVIEWERS, RejectSchema, caller, with_etag
from services.identity.schemas import FormSchema, court_field

blp = Blueprint("lawyers", __name__, description="Lawyer verification (律师认证)")
_LICENSE = {"description": "执业证号: 17 digits", "pattern": r"^\d{17}$"}


class OnlineSchema(Schema):
    method = fields.String(required=True, validate=validate.Equal(rules.ONLINE))
    license_no = fields.String(required=True, validate=validate.Length(min=1, max=40),
                               metadata=_LICENSE)
    law_firm = fields.String(required=True, validate=validate.Length(min=1, max=200))


class OfflineSchema(FormSchema):
    method = fields.String(required=True, validate=validate.Equal(rules.OFFLINE))
    court = court_field(required=True)
    license_no = fields.String(required=True, validate=validate.Length(min=1, max=40),
                               metadata=_LICENSE)
    law_firm = fields.String(required=True, validate=validate.Length(min=1, max=200))
    certificate = fields.Raw(metadata={"type": "string", "format": "binary",
                                       "description": "practising certificate scan"})
    id_card = fields.Raw(metadata={"type": "string", "format": "binary",
                                   "description": "ID card scan"})


class VerificationSchema(Schema):
    id = fields.String()
    account_id = fields.String()
    name = fields.String(metadata={"description": "the applicant's real name (reviews only)"})
    method = fields.String()
    license_no = fields.String()
    law_firm = fields.String()
    court = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "pending, verified or rejected"})
    face_check = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    files = fields.Dict(allow_none=True)
    submitted_at = fields.DateTime()
    reviewed_at = fields.DateTime(allow_none=True)
    version = fields.Integer(metadata={"description": "1 when submitted, +1 on each change; "
                                                      "the ETag is its quoted value"})


class VerificationListSchema(Schema):
    items = fields.List(fields.Nested(VerificationSchema))


class LawyerReviewQuerySchema(Schema):
    status = fields.String(load_default=rules.PENDING,
                           validate=validate.OneOf(rules.LAWYER_STATUSES))


def view(row: LawyerVerification, name: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id, "account_id": row.account_id, "method": row.method,
        "license_no": row.license_no, "law_firm": row.law_firm, "court": row.court,
        "status": row.status, "face_check": row.face_check, "reason": row.reason,
        "files": {"certificate": {"filename": row.certificate_filename,
                                  "content_type": row.certificate_content_type},
                  "id_card": {"filename": row.id_card_filename,
                              "content_type": row.id_card_content_type}}
        if row.method == rules.OFFLINE else None,
        "submitted_at": row.submitted_at, "reviewed_at": row.reviewed_at,
        "version": row.version}
    if name is not None:
        out["name"] = name
    return out


def _load(schema: Schema, data: Any, location: str) -> dict[str, Any]:
    try:
        return schema.load(data or {})  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise Problem(422, "validation-error", "the request is invalid",
                      errors={location: exc.messages}) from exc


class OfflineFormSchema(OfflineSchema):
    """The offline multipart body as the spec shows it: both scans are required (the view
    reads them with ``read_upload``; ``OfflineSchema`` loads the form fields only)."""

    certificate = fields.Raw(required=True, metadata={
        "type": "string", "format": "binary",
        "description": "practising certificate scan: JPEG, PNG, BMP or PDF, at most 20 MB"})
    id_card = fields.Raw(required=True, metadata={
        "type": "string", "format": "binary",
        "description": "ID card scan: JPEG, PNG, BMP or PDF, at most 20 MB"})


_REQUEST_BODY = {"required": True, "content": {
    "application/json": {"schema": OnlineSchema},
    "multipart/form-data": {"schema": OfflineFormSchema}}}


@blp.route("/lawyer-verifications")
class Verifications(MethodView):
    @roles(PARTY)
    @blp.doc(requestBody=_REQUEST_BODY)
    @blp.response(201, VerificationSchema)
    @blp.alt_response(413, description="a file is larger than 20 MB")
    @blp.alt_response(415, description="a file is not JPEG, PNG, BMP or PDF by content")
    def post(self) -> dict[str, Any]:
        """Apply to be verified as a lawyer: online (JSON; the registry answers at once) or
        offline (multipart with the certificate and ID card; a face check, then the chosen
        court reviews the originals in person)."""
        rt, who = runtime(), caller()
        if request.is_json:
            body = _load(OnlineSchema(), request.get_json(silent=True), "json")
            body.pop("method")
            return view(lawyers.verify_online(rt, who, **body))
        form = _load(OfflineSchema(), request.form.to_dict(), "form")
        form.pop("method")
        files = {f: read_upload(request.files.get(f), field=f) for f in lawyers.FILES}
        return view(lawyers.apply_offline(rt, who, **form, **files))


@blp.route("/lawyer-verifications/mine")
class MyVerifications(MethodView):
    @roles()
    @blp.response(200, VerificationListSchema)
    @paginated(blp)
    def get(self, pagination_parameters: PaginationParameters) -> dict[str, Any]:
        """The signed-in individual's verification applications and their status.

        Newest first, a page at a time (``X-Pagination``).
        """
        found = lawyers.mine(runtime().db, caller(), pagination_parameters)
        return {"items": [view(r) for r in found]}


@blp.route("/lawyer-verifications/reviews")
class VerificationReviews(MethodView):
    @roles(*REVIEWERS)
    @blp.arguments(LawyerReviewQuerySchema, location="query")
    @blp.response(200, VerificationListSchema)
    @paginated(blp)
    def get(self, query: dict[str, str],
            pagination_parameters: PaginationParameters) -> dict[str, Any]:
        """Offline applications to the reviewer's court, by status, oldest first.

        A page at a time (``X-Pagination``).
        """
        items = lawyers.reviews(runtime().db, caller(), query["status"], pagination_parameters)
        return {"items": [view(row, name) for row, name in items]}


@blp.route("/lawyer-verifications/<verification_id>")
class OneVerification(MethodView):
    @roles()
    @blp.response(200, VerificationSchema)
    def get(self, verification_id: str):  # type: ignore[no-untyped-def]
        """One application, for its applicant or (offline) its court's reviewers, with its
        version as the ETag that approve and reject take in If-Match."""
        return with_etag(view(lawyers.visible(runtime().db, caller(), verification_id)))


@blp.route("/lawyer-verifications/<verification_id>/files/<which>")
class VerificationFile(MethodView):
    @roles(*REVIEWERS)
    @blp.response(200, {"type": "string", "format": "binary"},
                  content_type="application/octet-stream")
    def get(self, verification_id: str, which: str) -> Response:
        """The certificate or ID-card scan (``which``: certificate | id_card)."""
        data, ctype = lawyers.file_of(runtime(), caller(), verification_id, which)
        return Response(data, mimetype=ctype, headers={
            "Content-Disposition": "inline", "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store"})


@blp.route("/lawyer-verifications/<verification_id>/approve")
class ApproveVerification(MethodView):
    @roles(*REVIEWERS)
    @documented(blp, "lawyer verification")
    @blp.response(200, VerificationSchema)
    def post(self, verification_id: str):  # type: ignore[no-untyped-def]
        """Approve after seeing the originals in person: the account becomes a lawyer.

        If-Match: the ETag of ``GET /lawyer-verifications/{verification_id}`` (or
        ``"<version>"`` from the review list)."""
        return with_etag(view(lawyers.decide(runtime().db, caller(), verification_id,
                                             Precondition.of_request(), approve=True)))


@blp.route("/lawyer-verifications/<verification_id>/reject")
class RejectVerification(MethodView):
    @roles(*REVIEWERS)
    @documented(blp, "lawyer verification")
    @blp.arguments(RejectSchema)
    @blp.response(200, VerificationSchema)
    def post(self, body: dict[str, str], verification_id: str):  # type: ignore[no-untyped-def]
        """Reject, with the reason the applicant will be told. If-Match as for approve."""
        return with_etag(view(lawyers.decide(runtime().db, caller(), verification_id,
                                             Precondition.of_request(), approve=False,
                                             reason=body["reason"])))
