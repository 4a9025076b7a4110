"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 16:23:55.537833
"""
from collections.abc import Sequence

from servicekit import kit_schema

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    kit_schema.create_v1()
    # ### end Alembic commands ###


def downgrade() -> None:
    kit_schema.drop_v1()
    # ### end Alembic commands ###
