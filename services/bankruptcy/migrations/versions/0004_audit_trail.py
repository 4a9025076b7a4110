"""audit trail: who did what, when, from where; append-only and hash-chained

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 14:00:00
"""
from collections.abc import Sequence

from servicekit import kit_schema

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    kit_schema.create_v4()


def downgrade() -> None:
    kit_schema.drop_v4()
