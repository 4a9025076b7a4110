"""``/internal/accounts``: what other services may learn about accounts they were given.

matters registers a case whose parties name the accounts that will see it; a wrong id there
would show the case to a stranger (DESIGN: a party sees only their own cases), so matters asks
who the accounts are before it writes the case: their kind, name and status, and for court
staff their court and roles (the case's judge and clerk are checked in the same call), and
nothing else (no ID number, no phone: contact details stay behind
``/internal/accounts/<id>/contact``). Services only; ids that name no account are simply absent
from the answer.
"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from servicekit.access import internal
from servicekit.service import runtime
from services.identity.models import Account
from services.identity.schemas import InternalAccountListSchema, InternalAccountsQuerySchema

blp = Blueprint("directory", __name__, description="Accounts, for other services")


@blp.route("/internal/accounts")
class InternalAccounts(MethodView):
    @internal
    @blp.arguments(InternalAccountsQuerySchema, location="query")
    @blp.response(200, InternalAccountListSchema)
    def get(self, query: dict[str, list[str]]) -> dict[str, object]:
        """Kind, name, status, court and roles of each account asked for that exists."""
        with runtime().db.transaction(reads_only=True) as session:
            found = session.scalars(select(Account)
                                    .where(Account.id.in_(set(query["id"])))).all()
            return {"items": [{"account_id": a.id, "kind": a.kind, "name": a.name,
                               "status": a.status, "court": a.court, "roles": a.role_list}
                              for a in found]}
