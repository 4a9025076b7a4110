"""QR sign-in: a poll secret, apart from the ticket in the QR code, stored as its SHA-256

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 17:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL for the tickets (two minutes) made before this revision: no poll can claim them
    with op.batch_alter_table('qr_tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('poll_hash', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('qr_tickets', schema=None) as batch_op:
        batch_op.drop_column('poll_hash')
