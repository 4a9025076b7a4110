"""identity's HTTP routes for court staff: thin views over ``usecases.staff``.

A court administrator manages the staff of their own court (the token's ``court`` claim);
other services find staff by court, role and department through ``/internal/staff`` (names
and roles only: contact details stay behind ``/internal/accounts/<id>/contact``).
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from servicekit.access import current_claims, internal, roles
from servicekit.logs import mask_phone
from servicekit.roles import COURT_ADMIN
from servicekit.service import runtime
from services.identity.models import Account
from services.identity.schemas import (
    CreateStaffSchema,
    InternalStaffListSchema,
    InternalStaffQuerySchema,
    StaffListSchema,
    StaffQuerySchema,
    StaffSchema,
)
from services.identity.usecases import staff

blp = Blueprint("staff", __name__, description="Court staff accounts")


def staff_view(account: Account) -> dict[str, object]:
    return {"id": account.id, "name": account.name, "court": account.court,
            "department": account.department, "roles": account.role_list,
            "phone_masked": mask_phone(account.phone), "status": account.status,
            "created_at": account.created_at}


def _caller_court() -> str | None:
    return current_claims().get("court")


@blp.route("/staff")
class StaffMembers(MethodView):
    @roles(COURT_ADMIN)
    @blp.arguments(CreateStaffSchema)
    @blp.response(201, StaffSchema)
    def post(self, body: dict[str, Any]) -> dict[str, object]:
        """Create a staff account in the administrator's own court."""
        return staff_view(staff.create_staff(runtime().db, caller_court=_caller_court(),
                                             **body))

    @roles(COURT_ADMIN)
    @blp.arguments(StaffQuerySchema, location="query")
    @blp.response(200, StaffListSchema)
    def get(self, query: dict[str, str]) -> dict[str, object]:
        """The administrator's court's staff (phones masked)."""
        items = staff.list_staff(runtime().db, caller_court=_caller_court(), **query)
        return {"items": [staff_view(a) for a in items]}


def _set_status(account_id: str, active: bool) -> dict[str, object]:
    claims = current_claims()
    return staff_view(staff.set_status(runtime().db, caller_court=claims.get("court"),
                                       caller_id=claims["sub"], account_id=account_id,
                                       active=active))


@blp.route("/staff/<account_id>/disable")
class DisableStaff(MethodView):
    @roles(COURT_ADMIN)
    @blp.response(200, StaffSchema)
    def post(self, account_id: str) -> dict[str, object]:
        """Disable a staff member: no more sign-ins, every refresh token revoked at once
        (access tokens already issued run out within 15 minutes)."""
        return _set_status(account_id, active=False)


@blp.route("/staff/<account_id>/enable")
class EnableStaff(MethodView):
    @roles(COURT_ADMIN)
    @blp.response(200, StaffSchema)
    def post(self, account_id: str) -> dict[str, object]:
        """Enable a disabled staff member again (they sign in anew)."""
        return _set_status(account_id, active=True)


@blp.route("/internal/staff")
class InternalStaff(MethodView):
    @internal
    @blp.arguments(InternalStaffQuerySchema, location="query")
    @blp.response(200, InternalStaffListSchema)
    def get(self, query: dict[str, str]) -> dict[str, object]:
        """Active staff of a court, by role and department (services only): who heads a
        division, who presides over the court."""
        items = staff.find_staff(runtime().db, **query)
        return {"items": [{"account_id": a.id, "name": a.name, "roles": a.role_list,
                           "department": a.department} for a in items]}
