"""identity's HTTP routes for the other ways to sign in [003 §1.2]: image captchas, SMS codes
(sign-in, password reset, change of phone), QR sign-in. Thin views over ``signin_*``.

Public (no token): ``POST /captchas``, ``POST /sms-codes``, ``POST /tokens/sms``,
``POST /password-resets``, ``POST /qr-tickets``, ``GET /qr-tickets/<ticket>`` (with the
ticket's poll secret in ``X-QR-Poll-Secret``). Answers that carry tokens or a ticket are
``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from servicekit.access import current_claims, public, roles
from servicekit.idempotency import answer_not_stored
from servicekit.service import runtime
from services.identity import signin_captcha, signin_codes, signin_qr
from services.identity.api import NO_STORE, _signing_key, _tokens, account_view, client_ip
from services.identity.schemas import (
    AccountSchema,
    FullMatch,
    TokenSchema,
    captcha_answer_field,
    captcha_id_field,
    phone_field,
)

blp = Blueprint("identity_signin", __name__,
                description="Captchas, SMS codes, QR sign-in, password reset, phone change")

_CODE = FullMatch(r"^\d{6}$", error="a code is 6 digits")
_TICKET = r"<string(minlength=20, maxlength=100):ticket>"
POLL_SECRET_HEADER = "X-QR-Poll-Secret"  # noqa: S105 - a header's name, not a secret


class CaptchaSchema(Schema):
    captcha_id = fields.String()
    image = fields.String(metadata={"description": "data:image/png;base64,…"})
    expires_in = fields.Integer(metadata={"description": "seconds"})


class CodeRequestSchema(Schema):
    phone = phone_field()
    purpose = fields.String(required=True,
                            validate=validate.OneOf(signin_codes.PUBLIC_PURPOSES))
    captcha_id = captcha_id_field(
        "required when the service always asks for one (production), and after a code was "
        "asked for from this address or for this phone in the last hour")
    captcha_answer = captcha_answer_field()


class CodeAcceptedSchema(Schema):
    expires_in = fields.Integer(metadata={"description": "how long a code sent is valid"})


class SmsLoginSchema(Schema):
    phone = phone_field()
    code = fields.String(required=True, load_only=True, validate=_CODE)


class PasswordResetSchema(SmsLoginSchema):
    new_password = fields.String(required=True, load_only=True,
                                 validate=validate.Length(min=8, max=128))


class QrTicketSchema(Schema):
    ticket = fields.String(metadata={"description": "secret; show only as the QR code"})
    qr_payload = fields.String(metadata={"description": "ecourt-login:<ticket>"})
    poll_secret = fields.String(metadata={
        "description": f"secret; keep it in the web page, never in the QR code, and send it "
                       f"as {POLL_SECRET_HEADER} with every poll"})
    expires_in = fields.Integer()


class QrStatusSchema(Schema):
    status = fields.String(metadata={"description": "pending, confirmed (tokens, once), "
                                                    "consumed or expired"})
    expires_in = fields.Integer()
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()


class PhoneChangeSchema(Schema):
    new_phone = phone_field()


class PhoneChangeConfirmSchema(Schema):
    old_code = fields.String(required=True, load_only=True, validate=_CODE)
    new_code = fields.String(required=True, load_only=True, validate=_CODE)


def _pepper() -> str:
    return runtime().settings.service_secret


@blp.route("/captchas")
class Captchas(MethodView):
    @public
    @blp.response(201, CaptchaSchema)
    @blp.alt_response(429, description="too many captchas from this address")
    def post(self):  # type: ignore[no-untyped-def]
        """A new image captcha (2 minutes, single use) for password sign-in and SMS codes."""
        rt = runtime()
        captcha_id, png, ttl = signin_captcha.create(
            rt.db, signin_captcha.service_of(rt), client_ip=client_ip(), pepper=_pepper())
        return ({"captcha_id": captcha_id, "image": signin_captcha.data_url(png),
                 "expires_in": ttl}, 201, NO_STORE)


@blp.route("/sms-codes")
class SmsCodes(MethodView):
    @public
    @blp.arguments(CodeRequestSchema)
    @blp.response(202, CodeAcceptedSchema)
    @blp.alt_response(400, description="captcha-required: solve one (POST /captchas) and "
                                       "send captcha_id and captcha_answer")
    @blp.alt_response(401, description="captcha-invalid: the captcha is wrong, expired or "
                                       "already used")
    @blp.alt_response(429, description="too many codes for this phone from this address (1 a "
                                       "minute, 5 an hour) or from this address (5 an hour)")
    def post(self, body: dict[str, str]) -> dict[str, int]:
        """Send a 6-digit code (5 minutes) by SMS when the phone has an account. Always 202,
        whether or not it has one.

        An image captcha comes first when the service always asks for one (production), and
        after a code was asked for from this address or for this phone in the last hour; a
        refused captcha spends and sends nothing. One phone gets at most 10 codes an hour
        from all addresses together: past that the answer is the same 202 and nothing is
        sent."""
        rt = runtime()
        signin_captcha.guard_sms_code(rt, body["phone"], client_ip(), body.get("captcha_id"),
                                      body.get("captcha_answer"))
        return {"expires_in": signin_codes.request_code(
            rt.db, body["phone"], body["purpose"], client_ip=client_ip(), pepper=_pepper())}


@blp.route("/tokens/sms")
class SmsTokens(MethodView):
    @public
    @answer_not_stored
    @blp.arguments(SmsLoginSchema)
    @blp.response(201, TokenSchema)
    @blp.alt_response(401, description="the code is wrong, expired or already used")
    @blp.alt_response(429, description="too many failed attempts for this account or address")
    def post(self, body: dict[str, str]):  # type: ignore[no-untyped-def]
        """Sign in with the phone and an SMS code: the same token pair as a password
        sign-in."""
        return _tokens(signin_codes.sign_in(runtime().db, _signing_key(), body["phone"],
                                            body["code"], client_ip=client_ip(),
                                            pepper=_pepper()))


@blp.route("/password-resets")
class PasswordResets(MethodView):
    @public
    @blp.arguments(PasswordResetSchema)
    @blp.response(204)
    @blp.alt_response(401, description="the code is wrong, expired or already used")
    @blp.alt_response(429, description="too many failed attempts for this account or address")
    def post(self, body: dict[str, str]) -> None:
        """Set a new password with a ``reset_password`` SMS code; every sign-in of the
        account ends."""
        signin_codes.reset_password(runtime().db, body["phone"], body["code"],
                                    body["new_password"], client_ip=client_ip(),
                                    pepper=_pepper())


@blp.route("/qr-tickets")
class QrTickets(MethodView):
    @public
    @answer_not_stored
    @blp.response(201, QrTicketSchema)
    @blp.alt_response(429, description="too many tickets from this address")
    def post(self):  # type: ignore[no-untyped-def]
        """A QR sign-in ticket (2 minutes) for the web to show; poll it for the tokens."""
        return signin_qr.create(runtime().db, client_ip=client_ip()), 201, NO_STORE


@blp.route(f"/qr-tickets/{_TICKET}")
class QrTicket(MethodView):
    @public
    @blp.doc(parameters=[{
        "in": "header", "name": POLL_SECRET_HEADER, "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 100},
        "description": "the poll_secret POST /qr-tickets gave with this ticket"}])
    @blp.response(200, QrStatusSchema)
    @blp.alt_response(404, description="no such ticket, or no or a wrong poll secret")
    def get(self, ticket: str):  # type: ignore[no-untyped-def]
        """The ticket's status; once confirmed, the next poll (only) returns the tokens.

        The ticket is in the QR code for anyone to see: a poll must carry the poll secret,
        which only the page that asked for the ticket has."""
        return signin_qr.poll(runtime().db, _signing_key(), ticket,
                              request.headers.get(POLL_SECRET_HEADER)), 200, NO_STORE


@blp.route(f"/qr-tickets/{_TICKET}/confirm")
class QrConfirm(MethodView):
    @roles()
    @blp.response(204)
    @blp.alt_response(404, description="no such ticket")
    @blp.alt_response(409, description="already confirmed")
    @blp.alt_response(410, description="expired")
    def post(self, ticket: str) -> None:
        """The signed-in mobile client approves the web sign-in for its own account."""
        signin_qr.confirm(runtime().db, ticket, current_claims()["sub"])


@blp.route("/accounts/me/phone-change")
class PhoneChange(MethodView):
    @roles()
    @blp.arguments(PhoneChangeSchema)
    @blp.response(202, CodeAcceptedSchema)
    @blp.alt_response(409, description="the new phone is the account's own, or it has none")
    @blp.alt_response(429, description="too many changes started by this account (3 an "
                                       "hour, 1 a minute), or codes for its phone or from "
                                       "this address")
    def post(self, body: dict[str, str]) -> dict[str, int]:
        """Start a change of phone: a code goes to the old phone and one to the new.

        A number another account uses gets the same answer; its code is sent to nobody, so
        the change cannot be confirmed. Starts never use the new number's allowance of
        sign-in and reset codes; past 10 change codes an hour to one number, whoever asks,
        a start is answered alike and its new-phone code is sent to nobody."""
        return {"expires_in": signin_codes.start_phone_change(
            runtime().db, current_claims()["sub"], body["new_phone"], client_ip=client_ip(),
            pepper=_pepper())}


@blp.route("/accounts/me/phone-change/confirm")
class PhoneChangeConfirm(MethodView):
    @roles()
    @blp.arguments(PhoneChangeConfirmSchema)
    @blp.response(200, AccountSchema)
    @blp.alt_response(401, description="a code is wrong, expired or already used")
    @blp.alt_response(409, description="the new phone was taken meanwhile")
    @blp.alt_response(429, description="too many failed attempts for this account or address")
    def post(self, body: dict[str, str]) -> dict[str, Any]:
        """Both codes right: the account's phone becomes the new one."""
        return account_view(signin_codes.confirm_phone_change(
            runtime().db, current_claims()["sub"], body["old_code"], body["new_code"],
            client_ip=client_ip(), pepper=_pepper()))
