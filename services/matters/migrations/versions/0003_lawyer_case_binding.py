"""lawyer-case binding: verified lawyers, binding requests, who submitted an application

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 17:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('lawyers',
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('license_no', sa.String(length=40), nullable=False),
    sa.Column('law_firm', sa.String(length=200), nullable=False),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_lawyers'))
    )
    with op.batch_alter_table('lawyers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lawyers_license_no'), ['license_no'], unique=False)
        batch_op.create_index(batch_op.f('ix_lawyers_name'), ['name'], unique=False)

    op.create_table('bindings',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('case_id', sa.String(length=36), nullable=False),
    sa.Column('court', sa.String(length=20), nullable=False),
    sa.Column('service_number', sa.String(length=60), nullable=False),
    sa.Column('lawyer_account_id', sa.String(length=36), nullable=False),
    sa.Column('lawyer_name', sa.String(length=100), nullable=False),
    sa.Column('law_firm', sa.String(length=200), nullable=False),
    sa.Column('party_id', sa.String(length=36), nullable=False),
    sa.Column('party_name', sa.String(length=100), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('letter_sha256', sa.String(length=64), nullable=True),
    sa.Column('letter_filename', sa.String(length=120), nullable=True),
    sa.Column('letter_content_type', sa.String(length=40), nullable=True),
    sa.Column('letter_size', sa.Integer(), nullable=True),
    sa.Column('deadline', sa.DateTime(timezone=True), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by_account_id', sa.String(length=36), nullable=True),
    sa.Column('decided_by_name', sa.String(length=100), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('escalation_level', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_bindings_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bindings')),
    sa.UniqueConstraint('service_number', name=op.f('uq_bindings_service_number'))
    )
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bindings_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_bindings_court'), ['court'], unique=False)
        batch_op.create_index(batch_op.f('ix_bindings_lawyer_account_id'),
                              ['lawyer_account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_bindings_status'), ['status'], unique=False)

    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('party_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('submitted_by_account_id', sa.String(length=36),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.drop_column('submitted_by_account_id')
        batch_op.drop_column('party_id')

    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bindings_status'))
        batch_op.drop_index(batch_op.f('ix_bindings_lawyer_account_id'))
        batch_op.drop_index(batch_op.f('ix_bindings_court'))
        batch_op.drop_index(batch_op.f('ix_bindings_case_id'))

    op.drop_table('bindings')
    with op.batch_alter_table('lawyers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lawyers_name'))
        batch_op.drop_index(batch_op.f('ix_lawyers_license_no'))

    op.drop_table('lawyers')
