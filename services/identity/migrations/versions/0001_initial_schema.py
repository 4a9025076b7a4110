"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 16:23:51.695225
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from servicekit import kit_schema

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    kit_schema.create_v1()
    op.create_table('accounts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('id_number', sa.String(length=18), nullable=False),
    sa.Column('phone', sa.String(length=11), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('roles', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('id_number', name=op.f('uq_accounts_id_number')),
    sa.UniqueConstraint('phone', name=op.f('uq_accounts_phone'))
    )
    # ### end Alembic commands ###


def downgrade() -> None:
    kit_schema.drop_v1()
    op.drop_table('accounts')
    # ### end Alembic commands ###
