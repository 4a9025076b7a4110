"""The kit's tables (outbox, inbox, idempotency keys) as every service's first migration
creates them — one definition instead of seven copies.

Frozen: a later change to the kit's tables is a new function (``create_v2``) called from a new
migration of each service, never an edit here, so that migration history stays true.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

UNSENT = sa.text('sent_at IS NULL')
SENT = sa.text('sent_at IS NOT NULL')


def create_v1() -> None:
    op.create_table('idempotency_keys',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('principal', sa.String(length=100), nullable=False),
    sa.Column('method', sa.String(length=10), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('headers', sa.Text(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', 'principal', name=op.f('pk_idempotency_keys'))
    )
    op.create_table('inbox',
    sa.Column('consumer', sa.String(length=100), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=200), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('consumer', 'event_id', name=op.f('pk_inbox'))
    )
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
              nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=200), nullable=False),
    sa.Column('exchange', sa.String(length=200), server_default='', nullable=False),
    sa.Column('routing_key', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('headers', sa.Text(), server_default='{}', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_unsent', ['available_at', 'id'], unique=False,
                              postgresql_where=UNSENT, sqlite_where=UNSENT)


def drop_v1() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_unsent', postgresql_where=UNSENT, sqlite_where=UNSENT)
    op.drop_table('outbox')
    op.drop_table('inbox')
    op.drop_table('idempotency_keys')


def create_v2() -> None:
    """Sent outbox rows by age, so the relay can delete them after their retention."""
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_sent', ['sent_at'], unique=False,
                              postgresql_where=SENT, sqlite_where=SENT)


def drop_v2() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_sent', postgresql_where=SENT, sqlite_where=SENT)


def create_v3() -> None:
    """Inbox entries and idempotency keys by age, so the relay can delete them after their
    retention (``servicekit.retention``)."""
    op.create_index('ix_inbox_received', 'inbox', ['received_at'], unique=False)
    op.create_index('ix_idempotency_keys_created', 'idempotency_keys', ['created_at'],
                    unique=False)


def drop_v3() -> None:
    op.drop_index('ix_idempotency_keys_created', table_name='idempotency_keys')
    op.drop_index('ix_inbox_received', table_name='inbox')
