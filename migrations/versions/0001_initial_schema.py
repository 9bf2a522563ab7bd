"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Intervals as collected (version 1) live in the narrow hot table ``intervals``;
estimates and edits (versions 2+) in ``interval_versions``, with who and why.
On PostgreSQL the time-series tables become TimescaleDB hypertables, partitioned
by time with the chunk interval from the settings (default 1 day, see README),
without TimescaleDB's default time index: the primary key (which leads with
meter and channel and includes time) serves every query billing makes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import amigate.storage.types
from amigate.storage.models import HYPERTABLES

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('anomalies',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), sa.Identity(always=False), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('meter_id', sa.Integer(), nullable=True),
    sa.Column('transformer_area', sa.String(length=64), nullable=True),
    sa.Column('start_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.Column('end_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=True),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('created_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.Column('updated_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.Column('acknowledged_by', sa.String(length=64), nullable=True),
    sa.Column('acknowledged_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=64), nullable=True),
    sa.Column('resolved_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_anomalies'))
    )
    with op.batch_alter_table('anomalies', schema=None) as batch_op:
        batch_op.create_index('ix_anomalies_area_start', ['transformer_area', 'start_at'], unique=False)
        batch_op.create_index('ix_anomalies_meter_kind_status', ['meter_id', 'kind', 'status'], unique=False)

    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=128), nullable=False),
    sa.Column('scopes', sa.String(length=128), nullable=False),
    sa.Column('created_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.Column('revoked_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_keys_prefix'))
    )
    op.create_table('channels',
    sa.Column('id', sa.SmallInteger().with_variant(sa.Integer(), 'sqlite'), sa.Identity(always=False), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=True),
    sa.Column('description', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_channels')),
    sa.UniqueConstraint('code', name=op.f('uq_channels_code'))
    )
    op.create_table('clock_checks',
    sa.Column('meter_id', sa.Integer(), nullable=False),
    sa.Column('checked_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.Column('offset_ms', sa.Integer(), nullable=False),
    sa.Column('corrected', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('meter_id', 'checked_at', name=op.f('pk_clock_checks')),
    sqlite_with_rowid=False
    )
    op.create_table('ingest_batches',
    sa.Column('digest', sa.String(length=32), nullable=False),
    sa.Column('table_name', sa.String(length=32), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('created_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('digest', name=op.f('pk_ingest_batches'))
    )
    op.create_table('interval_versions',
    sa.Column('meter_id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.SmallInteger(), nullable=False),
    sa.Column('ts', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.Column('version', sa.SmallInteger(), nullable=False),
    sa.Column('duration_s', sa.Integer(), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=True),
    sa.Column('quality', sa.SmallInteger(), nullable=False),
    sa.Column('source', sa.SmallInteger(), nullable=False),
    sa.Column('method', sa.SmallInteger(), nullable=True),
    sa.Column('reason_codes', sa.String(length=64), nullable=True),
    sa.Column('recorded_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('meter_id', 'channel_id', 'ts', 'version', name=op.f('pk_interval_versions')),
    sqlite_with_rowid=False
    )
    op.create_table('intervals',
    sa.Column('meter_id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.SmallInteger(), nullable=False),
    sa.Column('ts', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.Column('duration_s', sa.Integer(), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=True),
    sa.Column('quality', sa.SmallInteger(), nullable=False),
    sa.Column('source', sa.SmallInteger(), nullable=False),
    sa.PrimaryKeyConstraint('meter_id', 'channel_id', 'ts', name=op.f('pk_intervals')),
    sqlite_with_rowid=False
    )
    op.create_table('meters',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('address', sa.String(length=32), nullable=False),
    sa.Column('protocol', sa.String(length=16), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('bus', sa.String(length=128), nullable=False),
    sa.Column('service_point', sa.String(length=64), nullable=True),
    sa.Column('ct_ratio', amigate.storage.types.ExactDecimal(precision=18, scale=6), nullable=False),
    sa.Column('pt_ratio', amigate.storage.types.ExactDecimal(precision=18, scale=6), nullable=False),
    sa.Column('rated_voltage', amigate.storage.types.ExactDecimal(precision=18, scale=6), nullable=True),
    sa.Column('rated_current', amigate.storage.types.ExactDecimal(precision=18, scale=6), nullable=True),
    sa.Column('max_current', amigate.storage.types.ExactDecimal(precision=18, scale=6), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('transformer_area', sa.String(length=64), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.Column('updated_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_meters')),
    sa.UniqueConstraint('protocol', 'bus', 'address', name='uq_meters_bus_address')
    )
    with op.batch_alter_table('meters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_meters_transformer_area'), ['transformer_area'], unique=False)

    op.create_table('register_reads',
    sa.Column('meter_id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.SmallInteger(), nullable=False),
    sa.Column('read_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.Column('collected_at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.Column('source', sa.SmallInteger(), nullable=False),
    sa.Column('clock_offset_ms', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('meter_id', 'channel_id', 'read_at', name=op.f('pk_register_reads')),
    sqlite_with_rowid=False
    )
    op.create_table('samples',
    sa.Column('meter_id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.SmallInteger(), nullable=False),
    sa.Column('at', amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('meter_id', 'channel_id', 'at', name=op.f('pk_samples')),
    sqlite_with_rowid=False
    )

    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _create_hypertables()


def _create_hypertables() -> None:
    from amigate.config import load_settings

    chunk = load_settings().timescale_chunk_interval
    op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    for table, column in HYPERTABLES.items():
        op.execute(
            sa.text(
                f"SELECT create_hypertable('{table}', by_range('{column}', CAST(:chunk AS interval)),"
                " create_default_indexes => false)"
            ).bindparams(chunk=chunk)
        )


def downgrade() -> None:
    op.drop_table('samples')
    op.drop_table('register_reads')
    with op.batch_alter_table('meters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_meters_transformer_area'))

    op.drop_table('meters')
    op.drop_table('intervals')
    op.drop_table('interval_versions')
    op.drop_table('ingest_batches')
    op.drop_table('clock_checks')
    op.drop_table('channels')
    op.drop_table('api_keys')
    with op.batch_alter_table('anomalies', schema=None) as batch_op:
        batch_op.drop_index('ix_anomalies_meter_kind_status')
        batch_op.drop_index('ix_anomalies_area_start')

    op.drop_table('anomalies')
