"""the applicant in control: presentation tokens (亮证), consent requests and the status
list entries of exported credentials (issue 14)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('presentations',
    sa.Column('token_id', sa.String(length=32), nullable=False),
    sa.Column('holder_commitment', sa.String(length=64), nullable=False),
    sa.Column('certificate_id', sa.String(length=160), nullable=False),
    sa.Column('service_item_code', sa.String(length=64), nullable=True),
    sa.Column('purpose', sa.String(length=256), nullable=True),
    sa.Column('created_by', sa.String(length=256), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('redeemed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('redeemed_by', sa.String(length=256), nullable=True),
    sa.Column('redeemed_case', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('token_id', name=op.f('pk_presentations'))
    )
    op.create_table('consent_requests',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('holder_commitment', sa.String(length=64), nullable=False),
    sa.Column('principal', sa.String(length=256), nullable=False),
    sa.Column('service_item_code', sa.String(length=64), nullable=False),
    sa.Column('case_number', sa.String(length=128), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('type_codes', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_requests')),
    sa.UniqueConstraint('holder_commitment', 'principal', 'service_item_code', 'case_number', 'round', name='uq_consent_requests_purpose_round')
    )
    with op.batch_alter_table('consent_requests', schema=None) as batch_op:
        batch_op.create_index('ix_consent_requests_holder', ['holder_commitment', 'status'], unique=False)
    op.create_table('credential_status',
    sa.Column('id', _BIGINT, autoincrement=True, nullable=False),
    sa.Column('certificate_id', sa.String(length=160), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('lineage', sa.String(length=160), nullable=False),
    sa.Column('list_number', sa.Integer(), nullable=False),
    sa.Column('list_index', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credential_status')),
    sa.UniqueConstraint('certificate_id', 'version', name='uq_credential_status_certificate'),
    sa.UniqueConstraint('list_number', 'list_index', name='uq_credential_status_slot')
    )


def downgrade() -> None:
    op.drop_table('credential_status')
    with op.batch_alter_table('consent_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_requests_holder')
    op.drop_table('consent_requests')
    op.drop_table('presentations')
