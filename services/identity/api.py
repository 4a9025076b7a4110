"""identity's HTTP routes for accounts and sign-in: thin views over the use cases.

Token responses carry ``Cache-Control: no-store`` (RFC 6749 §5.1), and the token routes do not
keep ``Idempotency-Key`` answers (``answer_not_stored``): a stored answer would hold live tokens in
clear.
"""

from __future__ import annotations

import os
from typing import Any

from flask import jsonify, request
from flask.views import MethodView
from flask_smorest import Blueprint

from servicekit.access import current_claims, internal, public, roles
from servicekit.idempotency import answer_not_stored
from servicekit.logs import mask_id_number, mask_phone
from servicekit.service import runtime
from servicekit.tokens import SigningKey
from services.identity import signin_captcha, usecases
from services.identity.keys import jwks
from services.identity.models import Account
from services.identity.schemas import (
    AccountSchema,
    ContactSchema,
    LoginSchema,
    RefreshSchema,
    RegisterIndividualSchema,
    TokenSchema,
)
from services.identity.usecases import sessions
from services.identity.usecases.sessions import TokenPair

blp = Blueprint("identity", __name__, description="Accounts, sign-in and tokens")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
TRUST_FORWARDED_ENV = "IDENTITY_TRUST_FORWARDED"


def trust_forwarded_from_env() -> bool:
    """``IDENTITY_TRUST_FORWARDED=1`` only behind our own gateway/proxy."""
    return os.environ.get(TRUST_FORWARDED_ENV, "") == "1"


def client_ip() -> str:
    """The caller's address: ``REMOTE_ADDR``, or, when forwarded headers are trusted, the
    right-most ``X-Forwarded-For`` hop (the one our gateway appended; a client can forge the
    ones to its left)."""
    if runtime().extras.get("trust_forwarded"):
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        if hops and hops[-1]:
            return hops[-1][:100]
    return (request.remote_addr or "unknown")[:100]


def account_view(account: Account) -> dict[str, object]:
    return {"id": account.id, "kind": account.kind, "name": account.name,
            "id_number_masked": mask_id_number(account.id_number) if account.id_number
            else None,
            "phone_masked": mask_phone(account.phone) if account.phone else None,
            "roles": account.role_list,
            "status": account.status, "court": account.court,
            "department": account.department, "created_at": account.created_at}


def _signing_key() -> SigningKey:
    return runtime().extras["signing_key"]  # type: ignore[return-value]


def _tokens(pair: TokenPair) -> tuple[dict[str, Any], int, dict[str, str]]:
    return ({"access_token": pair.access_token, "refresh_token": pair.refresh_token,
             "token_type": pair.token_type, "expires_in": pair.expires_in}, 201, NO_STORE)


@blp.route("/accounts")
class Accounts(MethodView):
    @public
    @blp.arguments(RegisterIndividualSchema)
    @blp.response(201, AccountSchema)
    @blp.alt_response(429, description="too many refused registrations from this address "
                      "(5 in 15 minutes); see Retry-After")
    def post(self, body: dict[str, str]) -> dict[str, object]:
        """Register an individual (real name, ID-card number, mobile, password).

        A refusal for a taken phone or ID number counts against the client address."""
        return account_view(usecases.register_individual(runtime().db, **body,
                                                         client_ip=client_ip()))


@blp.route("/accounts/me")
class Me(MethodView):
    @roles()
    @blp.response(200, AccountSchema)
    def get(self) -> dict[str, object]:
        """The signed-in account, with ID number and phone masked."""
        return account_view(usecases.account_of(runtime().db, current_claims()["sub"]))


@blp.route("/tokens")
class Tokens(MethodView):
    @public
    @answer_not_stored
    @blp.arguments(LoginSchema)
    @blp.response(201, TokenSchema)
    @blp.alt_response(429, description="too many failed attempts; see Retry-After")
    def post(self, body: dict[str, str]):  # type: ignore[no-untyped-def]
        """Sign in with a phone or ID number and a password: a 15-minute EdDSA access
        token and a single-use refresh token (14 days)."""
        rt = runtime()
        signin_captcha.guard_password_login(rt, body["username"], client_ip(),
                                            body.get("captcha_id"), body.get("captcha_answer"))
        return _tokens(sessions.login(rt.db, _signing_key(), body["username"],
                                      body["password"], client_ip=client_ip(),
                                      pepper=rt.settings.service_secret))


@blp.route("/tokens/refresh")
class Refresh(MethodView):
    @public
    @answer_not_stored
    @blp.arguments(RefreshSchema)
    @blp.response(201, TokenSchema)
    def post(self, body: dict[str, str]):  # type: ignore[no-untyped-def]
        """Exchange a refresh token for a new pair. The old one stops working; presenting
        it again ends the whole sign-in."""
        return _tokens(sessions.refresh(runtime().db, _signing_key(), body["refresh_token"]))


@blp.route("/tokens/revoke")
class Revoke(MethodView):
    @public
    @answer_not_stored
    @blp.arguments(RefreshSchema)
    @blp.response(204)
    def post(self, body: dict[str, str]) -> None:
        """Sign out: end the sign-in the refresh token belongs to (every token of it)."""
        sessions.revoke(runtime().db, body["refresh_token"])


#: the JWKS document (RFC 7517) as the spec shows it; the keys are Ed25519 (OKP) public keys
_JWKS_DOC = {"200": {"description": "the signing keys", "content": {"application/json": {
    "schema": {"type": "object", "required": ["keys"], "properties": {
        "keys": {"type": "array", "items": {"type": "object", "required": ["kty"],
                                            "additionalProperties": True}}}}}}}}


@blp.route("/.well-known/jwks.json")
class Jwks(MethodView):
    @public
    @blp.doc(responses=_JWKS_DOC)
    def get(self):  # type: ignore[no-untyped-def]
        """The public keys that verify identity's access tokens."""
        # the signing key's, then those of IDENTITY_PREVIOUS_KEY_FILES (rotation, keys.py)
        return jsonify(jwks(_signing_key(), runtime().extras.get("previous_keys", ())))


@blp.route("/internal/accounts/<account_id>/contact")
class Contact(MethodView):
    @internal
    @blp.response(200, ContactSchema)
    def get(self, account_id: str) -> dict[str, str]:
        """An account's phone, for delivery at the moment it sends (services only)."""
        account = usecases.contact_of(runtime().db, account_id)
        return {"account_id": account.id, "phone": account.phone}
