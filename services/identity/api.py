"""identity's HTTP routes: thin views over the use cases."""

from __future__ import annotations

from flask import jsonify
from flask.views import MethodView
from flask_smorest import Blueprint

from servicekit.access import current_claims, internal, public, roles
from servicekit.logs import mask_id_number, mask_phone
from servicekit.service import runtime
from services.identity import usecases
from services.identity.models import Account
from services.identity.schemas import (
    AccountSchema,
    ContactSchema,
    LoginSchema,
    RegisterIndividualSchema,
    TokenSchema,
)

blp = Blueprint("identity", __name__, description="Accounts, sign-in and tokens")
ACCESS_TOKEN_TTL = 900


def account_view(account: Account) -> dict[str, object]:
    return {"id": account.id, "kind": account.kind, "name": account.name,
            "id_number_masked": mask_id_number(account.id_number),
            "phone_masked": mask_phone(account.phone), "roles": account.roles.split(","),
            "created_at": account.created_at}


@blp.route("/accounts")
class Accounts(MethodView):
    @public
    @blp.arguments(RegisterIndividualSchema)
    @blp.response(201, AccountSchema)
    def post(self, body: dict[str, str]) -> dict[str, object]:
        """Register an individual (real name, ID-card number, mobile, password)."""
        return account_view(usecases.register_individual(runtime().db, **body))


@blp.route("/accounts/me")
class Me(MethodView):
    @roles()
    @blp.response(200, AccountSchema)
    def get(self) -> dict[str, object]:
        """The signed-in account, with ID number and phone masked."""
        return account_view(usecases.contact_of(runtime().db, current_claims()["sub"]))


@blp.route("/tokens")
class Tokens(MethodView):
    @public
    @blp.arguments(LoginSchema)
    @blp.response(201, TokenSchema)
    def post(self, body: dict[str, str]) -> dict[str, object]:
        """Sign in with a password; answers a short-lived EdDSA access token."""
        account = usecases.authenticate(runtime().db, body["username"], body["password"])
        key = runtime().extras["signing_key"]
        token = key.sign({"sub": account.id, "roles": account.roles.split(","),  # type: ignore[attr-defined]
                          "kind": account.kind}, ttl=ACCESS_TOKEN_TTL)
        return {"access_token": token, "token_type": "Bearer", "expires_in": ACCESS_TOKEN_TTL}


@blp.route("/.well-known/jwks.json")
class Jwks(MethodView):
    @public
    def get(self):  # type: ignore[no-untyped-def]
        """The public keys that verify identity's access tokens."""
        return jsonify(keys=[runtime().extras["signing_key"].jwk()])  # type: ignore[attr-defined]


@blp.route("/internal/accounts/<account_id>/contact")
class Contact(MethodView):
    @internal
    @blp.response(200, ContactSchema)
    def get(self, account_id: str) -> dict[str, str]:
        """An account's phone, for delivery at the moment it sends (services only)."""
        account = usecases.contact_of(runtime().db, account_id)
        return {"account_id": account.id, "phone": account.phone}
