"""sign-in methods: captchas, SMS codes, request throttling, QR tickets

Image captchas (answer HMAC only), SMS verification codes (code HMAC, phone HMAC, tries; a
phone change's new number sealed), accepted code/ticket/captcha requests for throttling, and
QR sign-in tickets (SHA-256 only).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 17:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('captchas',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('answer_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_captchas'))
    )
    with op.batch_alter_table('captchas', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_captchas_expires_at'), ['expires_at'], unique=False)

    op.create_table('signin_codes',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('phone_key', sa.String(length=64), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('target_sealed', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                            name=op.f('fk_signin_codes_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signin_codes'))
    )
    with op.batch_alter_table('signin_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signin_codes_account_id'), ['account_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_signin_codes_expires_at'), ['expires_at'],
                              unique=False)
        batch_op.create_index('ix_signin_codes_phone_purpose', ['phone_key', 'purpose'],
                              unique=False)

    op.create_table('signin_requests',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
              nullable=False),
    sa.Column('scope', sa.String(length=20), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signin_requests'))
    )
    with op.batch_alter_table('signin_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signin_requests_requested_at'), ['requested_at'],
                              unique=False)
        batch_op.create_index('ix_signin_requests_scope_key', ['scope', 'key', 'requested_at'],
                              unique=False)

    op.create_table('qr_tickets',
    sa.Column('ticket_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('consumed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                            name=op.f('fk_qr_tickets_account_id_accounts')),
    sa.PrimaryKeyConstraint('ticket_hash', name=op.f('pk_qr_tickets'))
    )
    with op.batch_alter_table('qr_tickets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_qr_tickets_expires_at'), ['expires_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('qr_tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_qr_tickets_expires_at'))
    op.drop_table('qr_tickets')
    with op.batch_alter_table('signin_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_signin_requests_scope_key')
        batch_op.drop_index(batch_op.f('ix_signin_requests_requested_at'))
    op.drop_table('signin_requests')
    with op.batch_alter_table('signin_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_signin_codes_phone_purpose')
        batch_op.drop_index(batch_op.f('ix_signin_codes_expires_at'))
        batch_op.drop_index(batch_op.f('ix_signin_codes_account_id'))
    op.drop_table('signin_codes')
    with op.batch_alter_table('captchas', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_captchas_expires_at'))
    op.drop_table('captchas')
