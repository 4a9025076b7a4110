"""An organization's name in 100 characters, as its account's name and the registration form

The form let 200 through until 23ce13e while the organization's account, written in the same
transaction, keeps its name in 100: on PostgreSQL a longer name failed that insert, so no such
row exists there; SQLite does not hold a column to its length and kept them.

A stored name longer than 100 stops this migration (RuntimeError naming the organizations'
ids, not their names), on either database: it is a legal name, as the business licence reads,
so cutting it would make the court record a name the organization does not have, and a
person must correct it (organizations.name and the account's accounts.name) before upgrading
again. The check is made before any change: a refused upgrade leaves the schema at 0009.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 12:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME_LENGTH = 100
#: the most ids the refusal lists
IDS_SHOWN = 20


def upgrade() -> None:
    if not op.get_context().as_sql:  # offline (SQL written out): no rows to look at
        _refuse_longer_names()
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.alter_column('name', existing_type=sa.String(length=200),
                              type_=sa.String(length=NAME_LENGTH), existing_nullable=False)


def _refuse_longer_names() -> None:
    longer = op.get_bind().execute(sa.text(
        "SELECT id FROM organizations WHERE length(name) > :most ORDER BY id"),
        {"most": NAME_LENGTH}).scalars().all()
    if longer:
        shown = ", ".join(longer[:IDS_SHOWN]) + (" ..." if len(longer) > IDS_SHOWN else "")
        raise RuntimeError(
            f"identity migration 0010 stopped: {len(longer)} organization(s) have a name "
            f"longer than {NAME_LENGTH} characters (ids: {shown}); a legal name is not cut "
            "short: correct organizations.name and the account's accounts.name to the name "
            "on the business licence, then upgrade again (nothing was changed)")


def downgrade() -> None:
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.alter_column('name', existing_type=sa.String(length=NAME_LENGTH),
                              type_=sa.String(length=200), existing_nullable=False)
