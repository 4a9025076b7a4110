"""matters' wire format."""

from __future__ import annotations

from datetime import date
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from servicekit.db import utcnow
from services.matters.domain import (
    BINDING_STATUS_LABELS,
    CHANNELS,
    EFFECTIVENESS_CERTIFICATE,
    PARTY_ROLES,
    STATUS_LABELS,
    past_day_error,
)


def _happened(day: date) -> None:
    """A date of something that has happened: not before 1949-10-01, not after today in
    Beijing (``domain.past_day_error``); checked against the clock at each request."""
    wrong = past_day_error(day, utcnow())
    if wrong:
        raise ValidationError(wrong)


def past_date(**kwargs: Any) -> fields.Date:
    """A ``Date`` field of something that has happened (``_happened``), as the OpenAPI says."""
    return fields.Date(validate=_happened, metadata={
        "description": "from 1949-10-01 to today in Beijing: a day that has come"}, **kwargs)


class PartyInSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    role = fields.String(required=True, validate=validate.OneOf(list(PARTY_ROLES)))
    account_id = fields.String(load_default=None, validate=validate.Length(max=36))


class JudgmentSchema(Schema):
    title = fields.String(validate=validate.Length(max=200))
    decided_on = past_date()


class RegisterCaseSchema(Schema):
    case_number = fields.String(required=True, metadata={"example": "(2021)粤01民初8号"})
    court = fields.String(required=True, validate=validate.Length(min=2, max=20))
    court_name = fields.String(required=True, validate=validate.Length(min=2, max=100))
    cause = fields.String(required=True, validate=validate.Length(min=1, max=200))
    department = fields.String(required=True, validate=validate.Length(min=1, max=50))
    judge_account_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    clerk_account_id = fields.String(load_default=None, validate=validate.Length(max=36))
    effective_date = past_date(load_default=None)
    judgment = fields.Nested(JudgmentSchema, load_default=None)
    parties = fields.List(fields.Nested(PartyInSchema), required=True,
                          validate=validate.Length(min=1, max=50))

    @validates_schema
    def clerk_is_another_person(self, data: dict[str, Any], **_: Any) -> None:
        """The clerk is the second person reminders reach (DOMAIN: the clerk assists the
        judge and gets the SMS too): naming the judge again would leave them alone."""
        clerk = data.get("clerk_account_id")
        if clerk and clerk == data.get("judge_account_id"):
            raise ValidationError("the clerk must be another person than the presiding judge",
                                  field_name="clerk_account_id")

    @validates_schema
    def effective_once_decided(self, data: dict[str, Any], **_: Any) -> None:
        """A judgment takes effect on the day it is decided (a mediation document signed) or
        later, never before."""
        decided = (data.get("judgment") or {}).get("decided_on")
        effective = data.get("effective_date")
        if decided and effective and effective < decided:
            raise ValidationError("the judgment cannot take effect before it was decided "
                                  "(judgment.decided_on)", field_name="effective_date")

    @validates_schema
    def each_account_is_one_party(self, data: dict[str, Any], **_: Any) -> None:
        """One account is one person, so one party of the case: listed twice (plaintiff and
        defendant, or the same role again) they would see, apply in and be served in the case
        twice over. The later one is refused, naming the earlier by its place, not by the
        account id. Parties without an account are not compared: two people share a name."""
        first: dict[str, int] = {}
        errors: dict[str, dict[str, list[str]]] = {}
        for i, party in enumerate(data.get("parties") or []):
            account_id = party.get("account_id")
            if not account_id:
                continue
            if account_id in first:
                errors[str(i)] = {"account_id": [f"the same account as party {first[account_id]}"
                                                 ": one person is one party of a case"]}
            else:
                first[account_id] = i
        if errors:
            raise ValidationError({"parties": errors})


class PartySchema(Schema):
    id = fields.String(metadata={"description": "names this party in a binding or an "
                                                "application (party_id) when two parties of "
                                                "the case share a name and a role"})
    name = fields.String()
    role = fields.String()
    role_label = fields.String()


class CaseSchema(Schema):
    id = fields.String()
    case_number = fields.String()
    court = fields.String()
    court_name = fields.String()
    cause = fields.String()
    department = fields.String()
    effective_date = fields.Date(allow_none=True)
    parties = fields.List(fields.Nested(PartySchema))
    parties_label = fields.String(metadata={"example": "原告:周俊雄;被告:黄添强"})


def _party_id() -> fields.String:
    """A party by its id (the case's ``parties`` list them): the one way to tell apart two
    parties of one name *and* role (two plaintiffs both 张三)."""
    return fields.String(validate=validate.Length(min=1, max=36), metadata={
        "description": "the party's id from the case's parties; instead of party_name, and "
                       "needed when two parties of the case share a name and a role"})


def _one_way_to_name_a_party(data: dict[str, Any]) -> None:
    """A party is named by id, or by name (and role): never both, which could disagree."""
    if data.get("party_id") and (data.get("party_name") or data.get("party_role")):
        raise ValidationError("name the party by party_id or by party_name, not both",
                              field_name="party_id")


class SubmitApplicationSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf([EFFECTIVENESS_CERTIFICATE]))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=1000))
    use = fields.String(required=True, validate=validate.Length(min=1, max=500))
    materials = fields.List(fields.String(validate=validate.Length(max=200)),
                            load_default=list, validate=validate.Length(max=20))
    channel = fields.String(load_default="电子诉讼", validate=validate.OneOf(CHANNELS))
    party_name = fields.String(load_default=None, validate=validate.Length(min=1, max=100),
                               metadata={"description": "a lawyer bound to several parties of "
                                                        "the case names the one applying"})
    party_id = _party_id()

    @validates_schema
    def one_way_to_name_the_party(self, data: dict[str, Any], **_: Any) -> None:
        _one_way_to_name_a_party(data)


class DocumentStateSchema(Schema):
    state = fields.String(metadata={"description": "none | generating | issued | failed"})
    state_label = fields.String()
    document_id = fields.String(allow_none=True)
    code = fields.String(allow_none=True)
    failure = fields.String(allow_none=True)
    download_url = fields.String(allow_none=True)
    actions = fields.List(fields.String())


class ApplicationSchema(Schema):
    id = fields.String()
    case_id = fields.String()
    case_number = fields.String()
    service_number = fields.String()
    kind = fields.String()
    title = fields.String(metadata={"example": "郑楚健/生效证明"})
    applicant_name = fields.String()
    party_id = fields.String(allow_none=True, metadata={
        "description": "the party of the case applying (one of the case's parties), which "
                       "the name alone does not tell when two share it"})
    reason = fields.String()
    use = fields.String()
    materials = fields.List(fields.String())
    channel = fields.String()
    status = fields.String(validate=validate.OneOf(list(STATUS_LABELS)))
    status_label = fields.String()
    stage = fields.String()
    deadline = fields.DateTime()
    deadline_local = fields.String()
    remaining = fields.String(metadata={"example": "剩余9"})
    submitted_at = fields.DateTime()
    handler_name = fields.String(allow_none=True)
    handling_note = fields.String(allow_none=True)
    judge_opinion = fields.String(allow_none=True)
    judge_result_note = fields.String(allow_none=True)
    judge_handler = fields.String(allow_none=True)
    judge_decided_on = fields.Date(allow_none=True)
    document = fields.Nested(DocumentStateSchema)
    published_at = fields.DateTime(allow_none=True)
    version = fields.Integer()


class TodoArgsSchema(Schema):
    """The to-do list's filters (查询 / 高级检索), the same for the list and its export."""

    stage = fields.String(validate=validate.OneOf(["middle_office", "back_office"]))
    status = fields.String(validate=validate.OneOf(list(STATUS_LABELS)))
    kind = fields.String(validate=validate.OneOf([EFFECTIVENESS_CERTIFICATE]))
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    q = fields.String(validate=validate.Length(max=100))
    overdue = fields.Boolean()
    include_completed = fields.Boolean()


class TodoRowSchema(Schema):
    application_id = fields.String()
    service_number = fields.String()
    title = fields.String()
    case_number = fields.String()
    parties_label = fields.String()
    department = fields.String()
    channel = fields.String()
    source = fields.String(metadata={"example": "本院任务"})
    cross_court = fields.Boolean()
    remaining = fields.String()
    deadline_local = fields.String()
    status = fields.String()
    status_label = fields.String()
    submitted_local = fields.String()
    document_state = fields.String()
    actions = fields.List(fields.String())


class TodoSchema(Schema):
    items = fields.List(fields.Nested(TodoRowSchema))
    total = fields.Integer()


class ReviewSchema(Schema):
    issuable = fields.Boolean(load_default=False, metadata={
        "description": "审查结果: 是 (issue now). Either this or needs_judge must be true, "
                       "else 422"})
    needs_judge = fields.Boolean(load_default=False, metadata={
        "description": "是否需后台法官处理 (transfer to the back-office judge; wins over "
                       "issuable)"})
    note = fields.String(load_default=None, validate=validate.Length(max=1000))
    handler_name = fields.String(load_default=None, validate=validate.Length(max=100))


class JudgeDecisionSchema(Schema):
    opinion = fields.String(required=True, validate=validate.Length(min=1, max=100))
    result_note = fields.String(required=True, validate=validate.Length(min=1, max=1000))
    handler_name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    decided_on = past_date(required=True)
    effective_date = past_date(required=True)

    @validates_schema
    def effective_by_the_decision(self, data: dict[str, Any], **_: Any) -> None:
        """The judge records a judgment that has taken effect: on the day of the decision at
        the latest, else the certificate would certify what has not happened yet."""
        if data["effective_date"] > data["decided_on"]:
            raise ValidationError("the judgment must have taken effect by the decision "
                                  "(decided_on)", field_name="effective_date")


def _party_role() -> fields.String:
    """Which of two parties of a case with the same name is meant (both 张三, say, one the
    plaintiff and one the defendant): needed only then."""
    return fields.String(validate=validate.OneOf(list(PARTY_ROLES)), metadata={
        "description": "the party's role, when two parties of the case share the name "
                       "(plaintiff, defendant, third_party)"})


class BindingRequestSchema(Schema):
    """One multipart/form-data body: the text fields and the letter. Loaded from the files
    location (so the OpenAPI shows one multipart body); the text fields are merged in from the
    form before validation."""

    @pre_load
    def _with_form_fields(self, data: Any, **_kwargs: Any) -> dict[str, Any]:
        from flask import request

        return {**{k: request.form.get(k) for k in ("case_number", "party_name", "party_role")
                   if k in request.form}, **{k: data[k] for k in data}}

    letter = fields.Raw(required=True, metadata={
        "type": "string", "format": "binary",
        "description": "the letter of authorisation (授权委托书): JPEG, PNG, BMP or PDF, "
                       "at most 20 MB"})
    case_number = fields.String(required=True, validate=validate.Length(min=1, max=60),
                                metadata={"example": "(2021)粤01民初8号"})
    party_name = fields.String(required=True, validate=validate.Length(min=1, max=100),
                               metadata={"description": "the party the lawyer represents"})
    party_role = _party_role()


class BindingArgsSchema(Schema):
    status = fields.String(validate=validate.OneOf(list(BINDING_STATUS_LABELS)))


class RejectSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=1000))


class DirectBindingSchema(Schema):
    lawyer_account_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    party_id = _party_id()
    party_name = fields.String(validate=validate.Length(min=1, max=100), metadata={
        "description": "the party the lawyer represents (or party_id)"})
    party_role = _party_role()

    @validates_schema
    def names_one_party(self, data: dict[str, Any], **_: Any) -> None:
        _one_way_to_name_a_party(data)
        if not data.get("party_id") and not data.get("party_name"):
            raise ValidationError("name the party: party_id, or party_name",
                                  field_name="party_name")


class LetterInfoSchema(Schema):
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    download_url = fields.String()


class BindingSchema(Schema):
    id = fields.String()
    service_number = fields.String(metadata={"example": "(2026)粤01绑定第3号"})
    case_id = fields.String(allow_none=True, metadata={
        "description": "null to a lawyer until the binding is approved"})
    case_number = fields.String()
    court = fields.String()
    court_name = fields.String()
    parties_label = fields.String(allow_none=True, metadata={
        "description": "null to a lawyer until the binding is approved"})
    lawyer_account_id = fields.String()
    lawyer_name = fields.String()
    law_firm = fields.String()
    party_name = fields.String()
    party_id = fields.String(allow_none=True, metadata={
        "description": "null to a lawyer until the binding is approved"})
    party_role = fields.String(allow_none=True, metadata={
        "description": "plaintiff, defendant or third_party; null to a lawyer until the "
                       "binding is approved"})
    source = fields.String(metadata={"description": "request (the lawyer asked) | clerk"})
    status = fields.String(validate=validate.OneOf(list(BINDING_STATUS_LABELS)))
    status_label = fields.String()
    deadline = fields.DateTime()
    deadline_local = fields.String()
    remaining = fields.String(metadata={"example": "剩余3"})
    requested_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)
    decided_by_name = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    letter = fields.Nested(LetterInfoSchema, allow_none=True)
    version = fields.Integer()


class BindingListSchema(Schema):
    items = fields.List(fields.Nested(BindingSchema))
    total = fields.Integer()


class LawyerArgsSchema(Schema):
    q = fields.String(validate=validate.Length(max=100))


class LawyerSchema(Schema):
    account_id = fields.String()
    name = fields.String()
    license_no = fields.String()
    law_firm = fields.String()
    verified_at = fields.DateTime()


class LawyerListSchema(Schema):
    items = fields.List(fields.Nested(LawyerSchema))
    total = fields.Integer()
