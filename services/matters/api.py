"""matters' HTTP routes: thin views over cases.py, applications.py and handling.py."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from flask_smorest.pagination import PaginationParameters

from servicekit.access import current_claims, roles
from servicekit.paging import paginated
from servicekit.problems import PROBLEM_JSON
from servicekit.roles import CLERK, COURT_ADMIN, JUDGE, LAWYER, PARTY, REGISTRY_REVIEWER, SPECIALIST
from servicekit.service import runtime
from servicekit.versions import Precondition, documented, etag_header
from services.matters import applications, case_staff, cases, handling
from services.matters.access import is_staff_of
from services.matters.schemas import (
    ApplicationSchema,
    CaseSchema,
    JudgeDecisionSchema,
    RegisterCaseSchema,
    ReviewSchema,
    SubmitApplicationSchema,
    TodoArgsSchema,
    TodoSchema,
)
from services.matters.views import application_view, case_view, todo_csv, todo_row

blp = Blueprint("matters", __name__, description="Cases and applications in the case space")
CASE_SYSTEM = (COURT_ADMIN, REGISTRY_REVIEWER, SPECIALIST, JUDGE, CLERK)
COURT_STAFF = (SPECIALIST, JUDGE, CLERK, COURT_ADMIN, "division_head", "president")
SIGNED_IN = (PARTY, LAWYER, *COURT_STAFF)
PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def with_etag(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """An application or binding with its version as the ETag (``"3"``), which an update
    sends back in If-Match (``servicekit.versions``)."""
    return body, 200, etag_header(str(body["version"]))


def _app_view(app: Any, case: Any) -> dict[str, Any]:
    return application_view(app, case, staff=is_staff_of(current_claims(), app.court))


@blp.route("/cases")
class Cases(MethodView):
    @roles(*CASE_SYSTEM)
    @blp.arguments(RegisterCaseSchema)
    @blp.response(201, CaseSchema)
    @blp.doc(responses={  # string keys: they replace the kit's generic 422 and 503
        "422": {"description": "the body is invalid (validation-error), or the judge or clerk "
                               "it names is not an active judge / clerk of the case's court "
                               "(unknown-staff; errors.json names the field), or a "
                               "party's account_id is not an account of a person or company "
                               "of the party's name in use (unknown-party-account; "
                               "errors.json.parties names the party): nothing registered",
                "content": PROBLEM_CONTENT},
        "503": {"description": "identity could not be asked whether the judge, the clerk and "
                               "the parties' accounts exist "
                               "(service-unavailable), or the database is out of reach: "
                               "nothing registered; retry after Retry-After, with the same "
                               "Idempotency-Key", "content": PROBLEM_CONTENT,
                "headers": {"Retry-After": {"description": "seconds to wait before trying "
                                                           "again",
                                            "schema": {"type": "integer", "minimum": 1}}}}})
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """A case arrives from the court's trial system (court staff).

        Its presiding judge must be an active judge, its clerk (when named) an active clerk,
        of the case's court, as identity knows them; the department is not compared. A party's
        ``account_id`` (optional: one who has not registered has none) must be the account of
        a person or company of the party's name, in use.
        """
        rt = runtime()
        return case_view(cases.register_case(rt.db, current_claims(), body,
                                             case_staff.directory(rt)))

    @roles(*SIGNED_IN)
    @blp.response(200, CaseSchema(many=True))
    @paginated(blp)
    def get(self, pagination_parameters: PaginationParameters) -> list[dict[str, Any]]:
        """My cases (a party), or my court's cases (staff).

        Newest first, a page at a time (``X-Pagination``).
        """
        return [case_view(c) for c in cases.list_cases(runtime().db, current_claims(),
                                                       pagination_parameters)]


@blp.route("/cases/<case_id>")
class OneCase(MethodView):
    @roles(*SIGNED_IN)
    @blp.response(200, CaseSchema)
    def get(self, case_id: str) -> dict[str, Any]:
        """A case, to its parties and its court's staff."""
        return case_view(cases.get_case(runtime().db, current_claims(), case_id))


@blp.route("/cases/<case_id>/applications")
class CaseApplications(MethodView):
    @roles(PARTY, LAWYER)
    @blp.arguments(SubmitApplicationSchema)
    @blp.response(201, ApplicationSchema)
    def post(self, body: dict[str, Any], case_id: str) -> dict[str, Any]:
        """Apply in my case space (e.g. for an effectiveness certificate)."""
        return _app_view(*applications.submit(runtime().db, current_claims(), case_id, body))

    @roles(*SIGNED_IN)
    @blp.response(200, ApplicationSchema(many=True))
    @paginated(blp)
    def get(self, case_id: str,
            pagination_parameters: PaginationParameters) -> list[dict[str, Any]]:
        """The case's applications: all (staff) or my own (a party).

        Oldest first, a page at a time (``X-Pagination``).
        """
        case, found = applications.of_case(runtime().db, current_claims(), case_id,
                                           pagination_parameters)
        return [_app_view(a, case) for a in found]


@blp.route("/applications/<application_id>")
class OneApplication(MethodView):
    @roles(*SIGNED_IN)
    @blp.response(200, ApplicationSchema)
    def get(self, application_id: str):  # type: ignore[no-untyped-def]
        """An application, with its certificate's state (generating / issued / failed)."""
        return with_etag(_app_view(*applications.get(runtime().db, current_claims(),
                                                     application_id)))


def _after(app: Any):  # type: ignore[no-untyped-def]
    return with_etag(_app_view(*applications.get(runtime().db, current_claims(), app.id)))


@blp.route("/applications/<application_id>/review")
class Review(MethodView):
    @roles(SPECIALIST)
    @documented(blp, "application")
    @blp.arguments(ReviewSchema)
    @blp.response(200, ApplicationSchema)
    def post(self, body: dict[str, Any], application_id: str):  # type: ignore[no-untyped-def]
        """自行办理: issue the certificate, or transfer to the presiding judge."""
        return _after(handling.review(runtime().db, current_claims(), application_id, body,
                                      Precondition.of_request()))


@blp.route("/applications/<application_id>/judge-decision")
class JudgeDecision(MethodView):
    @roles(JUDGE)
    @documented(blp, "application")
    @blp.arguments(JudgeDecisionSchema)
    @blp.response(200, ApplicationSchema)
    def post(self, body: dict[str, Any], application_id: str):  # type: ignore[no-untyped-def]
        """The presiding judge's decision with the effective date; requests the certificate.

        The case's own presiding judge only (another judge of the court gets 403).
        """
        return _after(handling.judge_decides(runtime().db, current_claims(), application_id,
                                             body, Precondition.of_request()))


@blp.route("/applications/<application_id>/regenerate")
class Regenerate(MethodView):
    @roles(SPECIALIST, JUDGE, CLERK)
    @documented(blp, "application")
    @blp.response(200, ApplicationSchema)
    def post(self, application_id: str):  # type: ignore[no-untyped-def]
        """重新生成文书, after a failed generation.

        Any specialist of the court; a judge or a clerk only for their own case (another
        judge or clerk of the court gets 403).
        """
        return _after(handling.regenerate(runtime().db, current_claims(), application_id,
                                          Precondition.of_request()))


@blp.route("/applications/<application_id>/publish")
class Publish(MethodView):
    @roles(SPECIALIST, JUDGE, CLERK)
    @documented(blp, "application")
    @blp.response(200, ApplicationSchema)
    def post(self, application_id: str):  # type: ignore[no-untyped-def]
        """引入: publish the issued certificate to the party's case space.

        Any specialist of the court; a judge or a clerk only for their own case (another
        judge or clerk of the court gets 403).
        """
        return _after(handling.publish(runtime().db, current_claims(), application_id,
                                       Precondition.of_request()))


@blp.route("/todo")
class Todo(MethodView):
    @roles(*COURT_STAFF)
    @blp.arguments(TodoArgsSchema, location="query")
    @blp.response(200, TodoSchema)
    @paginated(blp)
    def get(self, args: dict[str, Any],
            pagination_parameters: PaginationParameters) -> dict[str, Any]:
        """中台待办 / 网上待办: the court's to-do list, filtered (查询 / 高级检索).

        The nearest deadline first, a page at a time (``X-Pagination``). ``total``: every row
        the filters match, on all pages. 导出 is ``GET /todo/export``.
        """
        page = pagination_parameters
        rows = [todo_row(a, c) for a, c in applications.todo(runtime().db, current_claims(),
                                                             args, page)]
        return {"items": rows, "total": page.item_count}


@blp.route("/todo/export")
class TodoExport(MethodView):
    @roles(*COURT_STAFF)
    @blp.arguments(TodoArgsSchema, location="query")
    @blp.doc(responses={200: {
        "description": "every row the filters select, as CSV (UTF-8 with a BOM), streamed; "
                       "a text cell starting with = + - @ tab or CR is prefixed with ' so "
                       "a spreadsheet shows it, never runs it as a formula",
        "content": {"text/csv": {"schema": {"type": "string"}}}}, 422: {
        "description": f"a filter is invalid (validation-error), or the filters select more "
                       f"than {applications.MAX_EXPORT_ROWS} rows (export-too-large, with "
                       "total and limit): narrow them",
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}})
    def get(self, args: dict[str, Any]) -> Response:
        """导出: the to-do list as filtered, every row (not one page), as CSV; 序号 from 1.

        The list's filters and access rules, in its order. At most ``MAX_EXPORT_ROWS``
        (50,000) rows: more is refused before any CSV is sent.
        """
        rows = applications.todo_export(runtime().db, current_claims(), args)
        return Response(todo_csv(todo_row(a, c) for a, c in rows),
                        content_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="todo.csv"'})
