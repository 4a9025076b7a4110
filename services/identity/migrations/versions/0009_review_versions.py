"""A version on organizations and lawyer verifications, for If-Match on their reviews

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 21:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('organizations', 'lawyer_verifications')


def upgrade() -> None:
    # rows made before this revision get version 1: the ETag "1" their reviewers read next
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False,
                                          server_default='1'))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('version')
