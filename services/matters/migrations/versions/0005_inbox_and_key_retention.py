"""inbox and idempotency-key retention: both tables by age, for the relay's pruning

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 22:45:00
"""
from collections.abc import Sequence

from servicekit import kit_schema

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    kit_schema.create_v3()


def downgrade() -> None:
    kit_schema.drop_v3()
