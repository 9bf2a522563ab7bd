"""billing: day totals per time-of-use period

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

``day_totals`` caches what the version-1 intervals of a meter, channel, local
day and time-of-use period add up to, so a meter-month determinant reads about
120 rows instead of 2,880 intervals (see ``amigate.storage.day_totals``).

A cached row must never outlive a change to the intervals it sums. Writes are
hooked where the change feed hooks them, so no write path can forget:

* PostgreSQL: a statement-level trigger on both series tables deletes the rows of
  the days each statement wrote into. It first takes the shared side of an
  advisory lock whose exclusive side the builder holds while it computes and
  stores rows, so a row computed before a concurrent write cannot be stored
  after that write's delete ran.
* SQLite: the ingest transaction deletes them itself (one writer at a time;
  see ``amigate.storage.feed_queries.record_sqlite``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import amigate.storage.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The builder's advisory lock ("amigate totals"); the same number as in day_totals.py.
_LOCK = 0x616D_6967_746F_7473
_SERIES = ("intervals", "interval_versions")
_PG_FUNCTION = f"""
CREATE FUNCTION amigate_day_totals_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({_LOCK});
    DELETE FROM day_totals d USING (
        SELECT meter_id, channel_id, min(ts) AS lo, max(ts) AS hi FROM new_rows
        GROUP BY meter_id, channel_id
    ) n
    WHERE d.meter_id = n.meter_id AND d.channel_id = n.channel_id
      AND d.day_start > n.lo - interval '1 day' AND d.day_start <= n.hi;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    ts = amigate.storage.types.UtcTimestamp(timezone=True)
    op.create_table(
        "day_totals",
        sa.Column("meter_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.SmallInteger(), nullable=False),
        sa.Column("day_start", ts, nullable=False),
        sa.Column("period", sa.SmallInteger(), nullable=False),
        sa.Column("schedule", sa.String(length=16), nullable=False),
        sa.Column("energy", sa.BigInteger(), nullable=False),
        sa.Column("intervals", sa.Integer(), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("estimated", sa.Integer(), nullable=False),
        sa.Column("estimated_energy", sa.BigInteger(), nullable=False),
        sa.Column("covered_s", sa.BigInteger(), nullable=False),
        sa.Column("overhang_s", sa.BigInteger(), nullable=False),
        sa.Column("peak", sa.BigInteger(), nullable=True),
        sa.Column("peak_at", ts, nullable=True),
        sa.PrimaryKeyConstraint(
            "meter_id", "channel_id", "day_start", "period", name=op.f("pk_day_totals")
        ),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_day_totals_day_start", "day_totals", ["day_start"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for table in _SERIES:
            op.execute(
                f"CREATE TRIGGER day_totals_{table} AFTER INSERT ON {table} "
                "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
                "EXECUTE FUNCTION amigate_day_totals_stale()"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _SERIES:
            op.execute(f"DROP TRIGGER IF EXISTS day_totals_{table} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS amigate_day_totals_stale()")
    op.drop_index("ix_day_totals_day_start", table_name="day_totals")
    op.drop_table("day_totals")
