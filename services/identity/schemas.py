"""identity's wire format."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates

from services.identity.domain import id_number_valid, mobile_valid


class RegisterIndividualSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    id_number = fields.String(required=True, metadata={"description": "ID-card number"})
    phone = fields.String(required=True, metadata={"description": "mobile number"})
    password = fields.String(required=True, load_only=True,
                             validate=validate.Length(min=8, max=128))

    @validates("id_number")
    def _id_number(self, value: str, **_kw: object) -> None:
        if not id_number_valid(value):
            raise ValidationError("not a valid ID-card number (GB 11643 check failed)")

    @validates("phone")
    def _phone(self, value: str, **_kw: object) -> None:
        if not mobile_valid(value):
            raise ValidationError("not a valid mainland mobile number")


class AccountSchema(Schema):
    id = fields.String()
    kind = fields.String()
    name = fields.String()
    id_number_masked = fields.String()
    phone_masked = fields.String()
    roles = fields.List(fields.String())
    created_at = fields.DateTime()


class LoginSchema(Schema):
    username = fields.String(required=True, metadata={"description": "phone or ID number"})
    password = fields.String(required=True, load_only=True)


class TokenSchema(Schema):
    access_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()


class ContactSchema(Schema):
    account_id = fields.String()
    phone = fields.String()
