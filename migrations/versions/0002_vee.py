"""validation (VEE): anomaly dedup, meter profiles, validation runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

* ``anomalies`` gains ``subject`` (what within the meter or area the condition is
  about: a channel, a phase), ``occurrences`` (how many times the condition was
  reported) and ``last_seen_at``: a condition that persists extends its open
  anomaly instead of creating another one.
* ``meter_profiles``: the per-meter facts validation rules need that the
  ``meters`` table does not hold (phases, contract capacity, generation on site,
  register capacity).
* ``vee_runs``: one row per validation run, with the parameter set it used.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import amigate.storage.types

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('anomalies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject', sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column('occurrences', sa.Integer(), server_default='1', nullable=False)
        )
        batch_op.add_column(
            sa.Column('last_seen_at', amigate.storage.types.UtcTimestamp(timezone=True),
                      nullable=True)
        )
    op.create_table('meter_profiles',
    sa.Column('meter_id', sa.Integer(), nullable=False),
    sa.Column('phases', sa.SmallInteger(), nullable=True),
    sa.Column('contract_kw', amigate.storage.types.ExactDecimal(precision=18, scale=6), nullable=True),
    sa.Column('has_generation', sa.Boolean(), nullable=False),
    sa.Column('register_capacity', amigate.storage.types.ExactDecimal(precision=18, scale=6), nullable=True),
    sa.Column('updated_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('meter_id', name=op.f('pk_meter_profiles'))
    )
    op.create_table('vee_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), sa.Identity(always=False), nullable=False),
    sa.Column('started_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.Column('finished_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=True),
    sa.Column('since', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.Column('until', amigate.storage.types.UtcTimestamp(timezone=True), nullable=True),
    sa.Column('meters', sa.Text(), nullable=True),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('intervals', sa.BigInteger(), nullable=False),
    sa.Column('anomalies', sa.Integer(), nullable=False),
    sa.Column('versions', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vee_runs'))
    )


def downgrade() -> None:
    op.drop_table('vee_runs')
    op.drop_table('meter_profiles')
    with op.batch_alter_table('anomalies', schema=None) as batch_op:
        batch_op.drop_column('last_seen_at')
        batch_op.drop_column('occurrences')
        batch_op.drop_column('subject')
