"""The kit's tables (outbox, inbox, idempotency keys; later the audit trail) as every service's
migrations create them — one definition instead of seven copies.

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


AUDIT_COLUMNS = ("id", "at", "actor", "roles", "source", "request_id", "action", "subject",
                 "outcome", "detail")
UNSEALED = sa.text('entry_hash IS NULL')

_PG_GUARD = """
CREATE FUNCTION audit_trail_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.entry_hash IS NULL AND NEW.entry_hash IS NOT NULL
     AND NEW.chain_pos IS NOT NULL AND NEW.prev_hash IS NOT NULL AND NEW.sealed_at IS NOT NULL
     AND ({new}) IS NOT DISTINCT FROM ({old}) THEN
    RETURN NEW;  -- the one change allowed: sealing an entry
  END IF;
  RAISE EXCEPTION 'audit_trail is append-only (% refused)', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_trail_append_only BEFORE UPDATE OR DELETE ON audit_trail
  FOR EACH ROW EXECUTE FUNCTION audit_trail_append_only();
CREATE TRIGGER audit_trail_no_truncate BEFORE TRUNCATE ON audit_trail
  FOR EACH STATEMENT EXECUTE FUNCTION audit_trail_append_only();
"""
_SQLITE_GUARD = (
    "CREATE TRIGGER audit_trail_no_delete BEFORE DELETE ON audit_trail "
    "BEGIN SELECT RAISE(ABORT, 'audit_trail is append-only (DELETE refused)'); END",
    "CREATE TRIGGER audit_trail_no_update BEFORE UPDATE ON audit_trail "
    "WHEN OLD.entry_hash IS NOT NULL OR NEW.entry_hash IS NULL OR NEW.chain_pos IS NULL "
    "OR NEW.prev_hash IS NULL OR NEW.sealed_at IS NULL OR {changed} "
    "BEGIN SELECT RAISE(ABORT, 'audit_trail is append-only (UPDATE refused)'); END",
)


def create_v4() -> None:
    """The audit trail (``servicekit.audit``), and the triggers that make it append-only: no
    DELETE or TRUNCATE, and no UPDATE but the sealer's, once, setting all four sealing
    columns (an entry half sealed would be outside the chain and out of the sealer's sight)."""
    op.create_table('audit_trail',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
              nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('roles', sa.String(length=200), server_default='', nullable=False),
    sa.Column('source', sa.String(length=100), server_default='', nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('subject', sa.String(length=200), server_default='', nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('detail', sa.Text(), server_default='{}', nullable=False),
    sa.Column('chain_pos', sa.BigInteger(), nullable=True),
    sa.Column('prev_hash', sa.String(length=64), nullable=True),
    sa.Column('entry_hash', sa.String(length=64), nullable=True),
    sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_trail')),
    sa.UniqueConstraint('chain_pos', name=op.f('uq_audit_trail_chain_pos'))
    )
    with op.batch_alter_table('audit_trail', schema=None) as batch_op:
        batch_op.create_index('ix_audit_trail_unsealed', ['id'], unique=False,
                              postgresql_where=UNSEALED, sqlite_where=UNSEALED)
        batch_op.create_index('ix_audit_trail_subject', ['subject', 'id'], unique=False)
        batch_op.create_index('ix_audit_trail_at', ['at'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(_PG_GUARD.format(new=", ".join(f"NEW.{c}" for c in AUDIT_COLUMNS),
                                    old=", ".join(f"OLD.{c}" for c in AUDIT_COLUMNS)))
    else:
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in AUDIT_COLUMNS)
        for statement in _SQLITE_GUARD:
            op.execute(statement.format(changed=changed))


def drop_v4() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER audit_trail_no_truncate ON audit_trail")
        op.execute("DROP TRIGGER audit_trail_append_only ON audit_trail")
        op.execute("DROP FUNCTION audit_trail_append_only()")
    op.drop_table('audit_trail')
