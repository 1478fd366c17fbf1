"""initial schema

Revision ID: 0001
Revises: 
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attachments',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('media_type', sa.String(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_attachments'))
    )
    op.create_table('audit_certificates',
    sa.Column('certificate_id', sa.String(length=160), nullable=False),
    sa.Column('idx', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.PrimaryKeyConstraint('certificate_id', 'idx', name=op.f('pk_audit_certificates'))
    )
    op.create_table('audit_entries',
    sa.Column('idx', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('leaf', sa.LargeBinary(), nullable=False),
    sa.Column('time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('principal', sa.String(length=256), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('holder_commitment', sa.String(length=64), nullable=True),
    sa.Column('service_item_code', sa.String(length=64), nullable=True),
    sa.Column('case_number', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('idx', name=op.f('pk_audit_entries'))
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entries_action', ['action', 'idx'], unique=False)
        batch_op.create_index('ix_audit_entries_holder', ['holder_commitment', 'idx'], unique=False)
        batch_op.create_index('ix_audit_entries_principal', ['principal', 'idx'], unique=False)
        batch_op.create_index('ix_audit_entries_time', ['time'], unique=False)

    op.create_table('cases',
    sa.Column('case_number', sa.String(length=128), nullable=False),
    sa.Column('service_item_code', sa.String(length=64), nullable=False),
    sa.Column('first_fetch_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('served', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('case_number', name=op.f('pk_cases'))
    )
    op.create_table('certificates',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('certificate_id', sa.String(length=160), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('lineage', sa.String(length=160), nullable=False),
    sa.Column('is_current', sa.Boolean(), nullable=False),
    sa.Column('holder_key', sa.String(length=160), nullable=False),
    sa.Column('type_code', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('issuer_code', sa.String(length=64), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=True),
    sa.Column('envelope', sa.LargeBinary(), nullable=False),
    sa.Column('envelope_sha256', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('attachment_sha256', sa.String(length=64), nullable=True),
    sa.Column('legacy_uscc', sa.Boolean(), nullable=False),
    sa.Column('stored_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificates')),
    sa.UniqueConstraint('certificate_id', 'version', name='uq_certificates_id_version')
    )
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.create_index('ix_certificates_holder_current', ['holder_key', 'is_current'], unique=False)
        batch_op.create_index('ix_certificates_lineage', ['lineage', 'version'], unique=False)

    op.create_table('checkpoints',
    sa.Column('size', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('root', sa.LargeBinary(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('size', name=op.f('pk_checkpoints'))
    )
    op.create_table('log_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('root', sa.LargeBinary(), nullable=False),
    sa.Column('frontier', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_log_head'))
    )
    op.create_table('registry_versions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registry_versions'))
    )
    op.create_table('revocations',
    sa.Column('lineage', sa.String(length=160), nullable=False),
    sa.Column('certificate_id', sa.String(length=160), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('envelope', sa.LargeBinary(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('lineage', name=op.f('pk_revocations'))
    )
    op.create_table('tree_nodes',
    sa.Column('level', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('idx', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('hash', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('level', 'idx', name=op.f('pk_tree_nodes'))
    )
    # The empty log: appenders lock this row, so it exists before the first append.
    op.bulk_insert(
        sa.table(
            "log_head",
            sa.column("id", sa.Integer),
            sa.column("size", sa.BigInteger),
            sa.column("root", sa.LargeBinary),
            sa.column("frontier", sa.LargeBinary),
        ),
        [{"id": 1, "size": 0, "root": hashlib.sha256(b"").digest(), "frontier": b""}],
    )


def downgrade() -> None:
    op.drop_table('tree_nodes')
    op.drop_table('revocations')
    op.drop_table('registry_versions')
    op.drop_table('log_head')
    op.drop_table('checkpoints')
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index('ix_certificates_lineage')
        batch_op.drop_index('ix_certificates_holder_current')

    op.drop_table('certificates')
    op.drop_table('cases')
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_time')
        batch_op.drop_index('ix_audit_entries_principal')
        batch_op.drop_index('ix_audit_entries_holder')
        batch_op.drop_index('ix_audit_entries_action')

    op.drop_table('audit_entries')
    op.drop_table('audit_certificates')
    op.drop_table('attachments')
