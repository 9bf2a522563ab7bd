"""interval series: each closed day's version-1 intervals, concatenated

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

``day_series`` caches the version-1 intervals of a meter, channel and local day
as the text columns the API writes (see ``amigate.storage.day_series``): a
meter-month series reads 30 rows instead of 2,880. Like ``day_totals`` it must
never outlive a write into its day, and it is dropped where they are: by the
series trigger on PostgreSQL (which now deletes from both tables, under the same
shared advisory lock the builder takes exclusively) and by the ingest
transaction on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import amigate.storage.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The day-totals builder's advisory lock (0004, ``amigate.storage.day_totals``).
_TOTALS_LOCK = 0x616D_6967_746F_7473


def _series_function(caches: Sequence[str]) -> str:
    """The series trigger of 0005, dropping the rows of ``caches`` in the days written."""
    stale = "".join(
        f"""stale_{table} AS (
        DELETE FROM {table} d USING agg
        WHERE d.meter_id = agg.meter_id AND d.channel_id = agg.channel_id
          AND d.day_start > agg.lo - interval '1 day' AND d.day_start <= agg.hi
    ), """
        for table in caches
    )
    return f"""
CREATE OR REPLACE FUNCTION amigate_series_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({_TOTALS_LOCK});
    WITH agg AS (
        SELECT meter_id, channel_id, count(*) AS n, min(ts) AS lo, max(ts) AS hi
        FROM new_rows GROUP BY meter_id, channel_id
    ), {stale.rstrip(", ")}
    INSERT INTO change_log (kind, channel_id, meters, counts, first_at, last_at, recorded_at)
    SELECT TG_ARGV[0], channel_id, array_agg(meter_id), array_agg(n), min(lo), max(hi), now()
    FROM agg GROUP BY channel_id;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    ts = amigate.storage.types.UtcTimestamp(timezone=True)
    op.create_table(
        "day_series",
        sa.Column("meter_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.SmallInteger(), nullable=False),
        sa.Column("day_start", ts, nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("first_s", sa.BigInteger(), nullable=False),
        sa.Column("step_s", sa.Integer(), nullable=False),
        sa.Column("starts", sa.Text(), nullable=True),
        sa.Column("packed", sa.Text(), nullable=False),
        sa.Column("vals", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("meter_id", "channel_id", "day_start", name=op.f("pk_day_series")),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_day_series_day_start", "day_series", ["day_start"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_series_function(("day_totals", "day_series")))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_series_function(("day_totals",)))
    op.drop_index("ix_day_series_day_start", table_name="day_series")
    op.drop_table("day_series")
