"""witnessed state: cosigned checkpoints, and the audit entry of each certificate version
and revocation

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('cosigned_checkpoints',
    sa.Column('size', _BIGINT, autoincrement=False, nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('cosigners', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('size', name=op.f('pk_cosigned_checkpoints'))
    )
    # Nullable: rows stored before this revision were admitted by entries whose leaves do
    # not commit to their envelope (see certhub/hub/audit/verify.py).
    with op.batch_alter_table('certificates') as batch:
        batch.add_column(sa.Column('audit_idx', _BIGINT, nullable=True))
    with op.batch_alter_table('revocations') as batch:
        batch.add_column(sa.Column('audit_idx', _BIGINT, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('revocations') as batch:
        batch.drop_column('audit_idx')
    with op.batch_alter_table('certificates') as batch:
        batch.drop_column('audit_idx')
    op.drop_table('cosigned_checkpoints')
