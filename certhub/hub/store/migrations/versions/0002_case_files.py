"""case files: cases registered and closed by windows, and how each material came

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('case_files',
    sa.Column('case_number', sa.String(length=128), nullable=False),
    sa.Column('service_item_code', sa.String(length=64), nullable=False),
    sa.Column('department_code', sa.String(length=64), nullable=False),
    sa.Column('window', sa.String(length=256), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('principal', sa.String(length=256), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('registered_month', sa.String(length=7), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('used_e_certificate', sa.Boolean(), nullable=True),
    sa.PrimaryKeyConstraint('case_number', name=op.f('pk_case_files'))
    )
    with op.batch_alter_table('case_files', schema=None) as batch_op:
        batch_op.create_index('ix_case_files_month', ['registered_month', 'service_item_code'], unique=False)
        batch_op.create_index('ix_case_files_registered_at', ['registered_at'], unique=False)
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entries_case', ['case_number', 'idx'], unique=False)
    op.create_table('case_materials',
    sa.Column('case_number', sa.String(length=128), nullable=False),
    sa.Column('material_code', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('certificate_id', sa.String(length=160), nullable=True),
    sa.PrimaryKeyConstraint('case_number', 'material_code', name=op.f('pk_case_materials'))
    )


def downgrade() -> None:
    op.drop_table('case_materials')
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_case')
    with op.batch_alter_table('case_files', schema=None) as batch_op:
        batch_op.drop_index('ix_case_files_registered_at')
        batch_op.drop_index('ix_case_files_month')
    op.drop_table('case_files')
