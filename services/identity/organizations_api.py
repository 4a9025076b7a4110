"""identity's HTTP routes for legal persons: registration by a signed-in individual (multipart,
with the business licence), review by the chosen court's registry reviewers or administrator.

Another court's staff get 404 for an organization of a court they do not review; a party gets
403 on the review routes. The USCC is shown to the registrant and the reviewers only.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint
from flask_smorest.pagination import PaginationParameters
from marshmallow import Schema, fields, validate

from servicekit.access import current_claims, roles
from servicekit.db import utcnow
from servicekit.paging import paginated
from servicekit.roles import COURT_ADMIN, PARTY, REGISTRY_REVIEWER
from servicekit.service import runtime
from servicekit.uploads import read_upload
from servicekit.versions import Precondition, documented, etag_header
from services.identity import organizations
from services.identity import organizations_domain as rules
from services.identity.models_orgs import Organization
from services.identity.organizations import Caller
from services.identity.schemas import FormSchema, court_field

blp = Blueprint("organizations", __name__, description="Legal persons (法人) and their review")
REVIEWERS = (REGISTRY_REVIEWER, COURT_ADMIN)


class RegisterOrganizationSchema(FormSchema):
    # the organization signs in as an account, whose name (as every account's, and a party's
    # in matters) holds 100 characters: a longer one met that column (PostgreSQL: a 500)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    uscc = fields.String(required=True, validate=validate.Length(min=1, max=40), metadata={
        "description": "统一社会信用代码: 18 characters; a failed check character is flagged "
                       "for the reviewer, not refused"})
    legal_representative = fields.String(required=True,
                                         validate=validate.Length(min=1, max=100))
    court = court_field("the reviewing court's code", required=True)
    court_name = fields.String(validate=validate.Length(max=100),
                               metadata={"description": "optional; for display only"})
    password = fields.String(required=True, load_only=True,
                             validate=validate.Length(min=8, max=128))


class LicenceFileSchema(Schema):
    licence = fields.Raw(required=True, metadata={
        "type": "string", "format": "binary",
        "description": "business licence: JPEG, PNG, BMP or PDF by content, at most 20 MB"})


class OrganizationFormSchema(RegisterOrganizationSchema, LicenceFileSchema):
    """The whole multipart body, as the spec shows it (the view reads the form and the file
    through the two schemas above)."""


#: one multipart body with every field: two stacked ``@arguments`` (form, files) would show
#: only the file in the spec
_REQUEST_BODY = {"required": True,
                 "content": {"multipart/form-data": {"schema": OrganizationFormSchema}}}


class OrganizationSchema(Schema):
    id = fields.String()
    name = fields.String()
    uscc = fields.String()
    uscc_check_failed = fields.Boolean()
    legal_representative = fields.String()
    court = fields.String()
    applicant_account_id = fields.String()
    status = fields.String(metadata={"description": "pending, approved or rejected"})
    reason = fields.String(allow_none=True)
    licence = fields.Dict(metadata={"description": "filename, content_type, size"})
    submitted_at = fields.DateTime()
    review_deadline = fields.DateTime()
    remaining_days = fields.Integer(metadata={"description": "negative when overdue"})
    remaining_label = fields.String(metadata={"description": "剩余N天 or 超过N天"})
    reviewed_at = fields.DateTime(allow_none=True)
    version = fields.Integer(metadata={"description": "1 when registered, +1 on each change; "
                                                      "the ETag is its quoted value"})


class OrganizationListSchema(Schema):
    items = fields.List(fields.Nested(OrganizationSchema))


class ReviewQuerySchema(Schema):
    status = fields.String(load_default=rules.PENDING,
                           validate=validate.OneOf(rules.REVIEW_STATUSES))


class RejectSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


def caller() -> Caller:
    claims = current_claims()
    return Caller(account_id=claims["sub"], roles=tuple(claims.get("roles") or ()),
                  court=claims.get("court"))


def view(org: Organization) -> dict[str, Any]:
    days, label = rules.remaining(org.review_deadline, org.reviewed_at or utcnow())
    return {"id": org.id, "name": org.name, "uscc": org.uscc,
            "uscc_check_failed": org.uscc_check_failed,
            "legal_representative": org.legal_representative, "court": org.court,
            "applicant_account_id": org.applicant_account_id, "status": org.status,
            "reason": org.reason,
            "licence": {"filename": org.licence_filename,
                        "content_type": org.licence_content_type, "size": org.licence_size},
            "submitted_at": org.submitted_at, "review_deadline": org.review_deadline,
            "remaining_days": days, "remaining_label": label, "reviewed_at": org.reviewed_at,
            "version": org.version}


def with_etag(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """A registration or lawyer verification with its version as the ETag (``"3"``), which a
    reviewer's approve or reject sends back in If-Match (``servicekit.versions``)."""
    return body, 200, etag_header(str(body["version"]))


@blp.route("/organizations")
class Organizations(MethodView):
    @roles(PARTY)
    @blp.arguments(RegisterOrganizationSchema, location="form")
    @blp.arguments(LicenceFileSchema, location="files")
    @blp.doc(requestBody=_REQUEST_BODY)
    @blp.response(201, OrganizationSchema)
    @blp.alt_response(413, description="the licence is larger than 20 MB")
    @blp.alt_response(415, description="the licence is not JPEG, PNG, BMP or PDF by content")
    def post(self, form: dict[str, str], _files: dict[str, Any]) -> dict[str, Any]:
        """Register an organization (multipart/form-data with the business licence). It can
        sign in with its USCC once the chosen court approves it (five working days)."""
        upload = read_upload(request.files.get("licence"), field="licence")
        form.pop("court_name", None)
        org = organizations.register(runtime(), caller(), licence=upload, **form)
        return view(org)


@blp.route("/organizations/mine")
class MyOrganizations(MethodView):
    @roles()
    @blp.response(200, OrganizationListSchema)
    @paginated(blp)
    def get(self, pagination_parameters: PaginationParameters) -> dict[str, Any]:
        """The organizations the signed-in individual registered, with their review status.

        Newest first, a page at a time (``X-Pagination``).
        """
        found = organizations.mine(runtime().db, caller(), pagination_parameters)
        return {"items": [view(o) for o in found]}


@blp.route("/organizations/reviews")
class OrganizationReviews(MethodView):
    @roles(*REVIEWERS)
    @blp.arguments(ReviewQuerySchema, location="query")
    @blp.response(200, OrganizationListSchema)
    @paginated(blp)
    def get(self, query: dict[str, str],
            pagination_parameters: PaginationParameters) -> dict[str, Any]:
        """Registrations for the reviewer's court, by status, soonest deadline first.

        A page at a time (``X-Pagination``).
        """
        items = organizations.reviews(runtime().db, caller(), query["status"],
                                      pagination_parameters)
        return {"items": [view(o) for o in items]}


@blp.route("/organizations/<org_id>")
class OrganizationDetail(MethodView):
    @roles()
    @blp.response(200, OrganizationSchema)
    def get(self, org_id: str):  # type: ignore[no-untyped-def]
        """One registration, for its registrant or its court's reviewers, with its version as
        the ETag that approve and reject take in If-Match."""
        return with_etag(view(organizations.visible(runtime().db, caller(), org_id)))


@blp.route("/organizations/<org_id>/licence")
class OrganizationLicence(MethodView):
    @roles()
    @blp.response(200, {"type": "string", "format": "binary"},
                  content_type="application/octet-stream")
    def get(self, org_id: str) -> Response:
        """The business licence as uploaded, with its content type (sniffed at upload)."""
        org, data = organizations.licence(runtime(), caller(), org_id)
        return Response(data, mimetype=org.licence_content_type, headers={
            "Content-Disposition": "inline", "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store"})


@blp.route("/organizations/<org_id>/approve")
class ApproveOrganization(MethodView):
    @roles(*REVIEWERS)
    @documented(blp, "registration")
    @blp.response(200, OrganizationSchema)
    def post(self, org_id: str):  # type: ignore[no-untyped-def]
        """Approve the registration: the organization can sign in with its USCC.

        If-Match: the ETag of ``GET /organizations/{org_id}`` (or ``"<version>"`` from the
        review list)."""
        return with_etag(view(organizations.decide(runtime().db, caller(), org_id,
                                                   Precondition.of_request(), approve=True)))


@blp.route("/organizations/<org_id>/reject")
class RejectOrganization(MethodView):
    @roles(*REVIEWERS)
    @documented(blp, "registration")
    @blp.arguments(RejectSchema)
    @blp.response(200, OrganizationSchema)
    def post(self, body: dict[str, str], org_id: str):  # type: ignore[no-untyped-def]
        """Reject the registration, with the reason the registrant will be told.

        If-Match as for approve."""
        return with_etag(view(organizations.decide(runtime().db, caller(), org_id,
                                                   Precondition.of_request(), approve=False,
                                                   reason=body["reason"])))
