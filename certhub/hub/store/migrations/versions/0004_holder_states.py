"""holder states: a counter per holder, moved by every change to its certificates, that a
fetch served from the cache is checked against in its group commit

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('holder_states',
    sa.Column('holder_key', sa.String(length=160), nullable=False),
    sa.Column('version', _BIGINT, nullable=False),
    sa.PrimaryKeyConstraint('holder_key', name=op.f('pk_holder_states'))
    )


def downgrade() -> None:
    op.drop_table('holder_states')
