"""identity's wire format. ID numbers and phones leave identity only masked, except through
``/internal/accounts/<id>/contact`` (services only)."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from servicekit.roles import STAFF_ROLES
from services.identity.domain import (
    COURT_PATTERN,
    MOBILE_PATTERN,
    court_code_valid,
    id_number_valid,
    mobile_valid,
    staff_roles_problem,
)

_PASSWORD = validate.Length(min=8, max=128)
_DEPARTMENT = validate.Length(min=1, max=50)
#: the most accounts one ``/internal/accounts`` look-up names (a case's parties)
MAX_ACCOUNTS_ASKED = 50


class FullMatch(validate.Regexp):
    """``validate.Regexp`` (so the spec still shows the pattern) that the whole value must
    match: ``Regexp`` uses ``re.match``, whose ``$`` also matches before a final newline.
    ``\\d`` is 0-9 only, as in the spec's ECMA-262 regex."""

    def __init__(self, regex: str, *, error: str | None = None) -> None:
        super().__init__(regex, re.ASCII, error=error)

    def __call__(self, value):  # type: ignore[no-untyped-def]
        if not isinstance(value, str) or self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class FormSchema(Schema):
    """The text fields of a multipart/form-data body. The kit refuses U+0000 (NUL) in a JSON
    body, a path and a query (``servicekit.web``), not in a form: a form field with it reached
    the insert, which PostgreSQL refused with a 500 (its text cannot hold the character)."""

    @validates_schema
    def _no_nul(self, data: dict[str, Any], **_kw: object) -> None:
        held = {name: ["must not contain the character U+0000 (NUL)"]
                for name, value in data.items() if isinstance(value, str) and "\x00" in value}
        if held:
            raise ValidationError(held)


def _check_phone(value: str) -> None:
    if not mobile_valid(value):
        raise ValidationError("not a valid mainland mobile number")


def phone_field(**kwargs: object) -> fields.String:
    """A required mainland mobile number, checked on load and described in the spec."""
    return fields.String(required=True, validate=_check_phone, metadata={
        "description": "mainland mobile number", "pattern": MOBILE_PATTERN}, **kwargs)


def captcha_id_field(when: str) -> fields.String:
    """The id of a captcha from ``POST /captchas``, sent with what it protects."""
    return fields.String(load_default=None, validate=validate.Length(max=36),
                         metadata={"description": f"from POST /captchas; {when}"})


def captcha_answer_field() -> fields.String:
    return fields.String(load_default=None, load_only=True, validate=validate.Length(max=10))


def _check_court(value: str) -> None:
    if not court_code_valid(value):
        raise ValidationError("not a court code (such as 粤01)")


def court_field(description: str = "a court's code, such as 粤01", **kwargs: object
                ) -> fields.String:
    """A court's code, checked on load and described in the spec with its pattern, so a
    generated client (or a fuzzer) knows an empty or spaced code is refused."""
    return fields.String(validate=_check_court, metadata={
        "description": description, "pattern": COURT_PATTERN}, **kwargs)


class RegisterIndividualSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    id_number = fields.String(required=True, metadata={
        "description": "mainland resident ID number: 17 digits and the GB 11643 check "
                       "character", "pattern": r"^\d{17}[\dXx]$"})
    phone = phone_field()
    password = fields.String(required=True, load_only=True, validate=_PASSWORD)

    @validates("id_number")
    def _id_number(self, value: str, **_kw: object) -> None:
        if not id_number_valid(value):
            raise ValidationError("not a valid ID-card number (GB 11643 check failed)")


class AccountSchema(Schema):
    id = fields.String()
    kind = fields.String()
    name = fields.String()
    id_number_masked = fields.String(allow_none=True,
                                     metadata={"description": "null for court staff"})
    phone_masked = fields.String(allow_none=True,
                                 metadata={"description": "null for organizations"})
    roles = fields.List(fields.String())
    status = fields.String()
    court = fields.String(allow_none=True)
    department = fields.String(allow_none=True)
    created_at = fields.DateTime()


class LoginSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=32),
                             metadata={"description": "phone or ID number"})
    password = fields.String(required=True, load_only=True,
                             validate=validate.Length(min=1, max=128))
    captcha_id = captcha_id_field("required after a failed attempt")
    captcha_answer = captcha_answer_field()


class RefreshSchema(Schema):
    refresh_token = fields.String(required=True, load_only=True,
                                  validate=validate.Length(min=1, max=200))


class TokenSchema(Schema):
    access_token = fields.String()
    refresh_token = fields.String(metadata={
        "description": "opaque; single use: exchange it at /tokens/refresh for a new pair"})
    token_type = fields.String()
    expires_in = fields.Integer(metadata={"description": "access token lifetime, seconds"})


class ContactSchema(Schema):
    account_id = fields.String()
    phone = fields.String()


class CreateStaffSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    phone = phone_field()
    password = fields.String(required=True, load_only=True, validate=_PASSWORD)
    roles = fields.List(fields.String(validate=validate.OneOf(sorted(STAFF_ROLES))),
                        required=True, metadata={"minItems": 1, "uniqueItems": True})
    department = fields.String(load_default=None, allow_none=True, validate=_DEPARTMENT,
                               metadata={"description": "e.g. 立案庭, 民一庭"})
    court = court_field("optional; must be the caller's own court", load_default=None,
                        allow_none=True)

    @validates("roles")
    def _roles(self, value: list[str], **_kw: object) -> None:
        problem = staff_roles_problem(value)
        if problem:
            raise ValidationError(problem)


class StaffSchema(Schema):
    id = fields.String()
    name = fields.String()
    court = fields.String()
    department = fields.String(allow_none=True)
    roles = fields.List(fields.String())
    phone_masked = fields.String()
    status = fields.String()
    created_at = fields.DateTime()


class StaffQuerySchema(Schema):
    role = fields.String(validate=validate.OneOf(sorted(STAFF_ROLES)))
    department = fields.String(validate=_DEPARTMENT)


class StaffListSchema(Schema):
    items = fields.List(fields.Nested(StaffSchema))


class InternalStaffQuerySchema(StaffQuerySchema):
    court = court_field(required=True)


class InternalStaffSchema(Schema):
    account_id = fields.String()
    name = fields.String()
    roles = fields.List(fields.String())
    department = fields.String(allow_none=True)


class InternalStaffListSchema(Schema):
    items = fields.List(fields.Nested(InternalStaffSchema))


class InternalAccountsQuerySchema(Schema):
    id = fields.List(fields.String(validate=validate.Length(min=1, max=36)), required=True,
                     validate=validate.Length(min=1, max=MAX_ACCOUNTS_ASKED))


class InternalAccountSchema(Schema):
    account_id = fields.String()
    kind = fields.String()
    name = fields.String()
    status = fields.String()
    court = fields.String(allow_none=True, metadata={
        "description": "a staff member's court; none for a person or a company"})
    roles = fields.List(fields.String())


class InternalAccountListSchema(Schema):
    items = fields.List(fields.Nested(InternalAccountSchema))
