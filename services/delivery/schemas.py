"""delivery's wire format."""

from __future__ import annotations

from marshmallow import Schema, fields


class NotificationSchema(Schema):
    id = fields.String()
    category = fields.String()
    title = fields.String()
    body = fields.String()
    created_at = fields.DateTime()
    read_at = fields.DateTime(allow_none=True)


class InboxSchema(Schema):
    unread = fields.Integer()
    items = fields.List(fields.Nested(NotificationSchema))
