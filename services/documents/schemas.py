"""documents's wire format."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class SealSchema(Schema):
    court = fields.String(required=True, validate=validate.Length(min=1, max=20),
                          metadata={"description": "court code, e.g. 粤01"})
    court_name = fields.String(required=True, validate=validate.Length(min=2, max=40),
                               metadata={"description": "e.g. 广州市中级人民法院"})
    seal_name = fields.String(required=True, validate=validate.Length(min=2, max=60),
                              metadata={"description": "e.g. 广州市中级人民法院诉讼服务专用章"})
    version = fields.Integer(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class DocumentSchema(Schema):
    id = fields.String()
    application_id = fields.String()
    request_id = fields.String()
    court = fields.String()
    court_name = fields.String()
    kind = fields.String()
    case_number = fields.String()
    service_number = fields.String()
    code = fields.String(metadata={"description": "anti-counterfeit code, display form"})
    sha256 = fields.String()
    size = fields.Integer()
    issued_at = fields.DateTime()
    status = fields.String(metadata={"description": "valid | revoked"})
    published = fields.Boolean()
    published_at = fields.DateTime(allow_none=True)
    verify_url = fields.String()


class DocumentListSchema(Schema):
    items = fields.List(fields.Nested(DocumentSchema))


class DocumentQuerySchema(Schema):
    application_id = fields.String(required=True, validate=validate.Length(min=1, max=64))


class VerificationSchema(Schema):
    code = fields.String()
    court = fields.String()
    court_name = fields.String()
    kind = fields.String()
    kind_label = fields.String()
    case_number = fields.String()
    issued_at = fields.DateTime()
    issued_at_local = fields.String(metadata={"description": "issue time in Asia/Shanghai"})
    status = fields.String(metadata={"description": "valid | revoked"})
    sha256 = fields.String()
    verify_url = fields.String()


class UploadSchema(Schema):
    file = fields.Raw(required=True, metadata={
        "type": "string", "format": "binary",
        "description": "a PDF (its content must start with %PDF-, else 415), at most 20 MB"})


class UploadResultSchema(Schema):
    result = fields.String(metadata={"description": "authentic | altered | revoked | unknown"})
    document = fields.Nested(VerificationSchema, allow_none=True)
