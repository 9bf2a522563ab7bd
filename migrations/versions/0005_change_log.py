"""change feed: PostgreSQL writers append one log row per statement and channel

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

The statement-level triggers of 0003 upserted one open ``changes`` entry per
series a statement wrote: a time-major batch touching 10,000 meters paid 10,000
index-checked upserts per COPY, and idempotent ingest fell from about 0.8 to
0.25 of a raw COPY. Now one trigger per series table groups the statement's rows
by series once and, with that, both appends one ``change_log`` row per channel
(the meters as an array with their row counts, and the statement's first and
last start) and drops the day totals of the days written into (as 0004's trigger
did, under the shared side of the builder's advisory lock). An anomaly created or
moved appends a log row too. A feed reader, under its advisory lock, moves the
committed log rows into open entries (one per series or anomaly, in the order
they were logged) before it seals them; a log row of a transaction still running
is invisible to it and stays for a later reader, as open entries did. SQLite
(one writer at a time) keeps writing open entries from the ingest transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import amigate.storage.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The day-totals builder's advisory lock (0004, ``amigate.storage.day_totals``).
_TOTALS_LOCK = 0x616D_6967_746F_7473
_SERIES = ("intervals", "interval_versions")
_SERIES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION amigate_series_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({_TOTALS_LOCK});
    WITH agg AS (
        SELECT meter_id, channel_id, count(*) AS n, min(ts) AS lo, max(ts) AS hi
        FROM new_rows GROUP BY meter_id, channel_id
    ), stale AS (
        DELETE FROM day_totals d USING agg
        WHERE d.meter_id = agg.meter_id AND d.channel_id = agg.channel_id
          AND d.day_start > agg.lo - interval '1 day' AND d.day_start <= agg.hi
    )
    INSERT INTO change_log (kind, channel_id, meters, counts, first_at, last_at, recorded_at)
    SELECT TG_ARGV[0], channel_id, array_agg(meter_id), array_agg(n), min(lo), max(hi), now()
    FROM agg GROUP BY channel_id;
    RETURN NULL;
END $$
"""
_ANOMALY_FUNCTION = """
CREATE OR REPLACE FUNCTION amigate_anomaly_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status IS NOT DISTINCT FROM NEW.status THEN
        RETURN NULL;
    END IF;
    INSERT INTO change_log (kind, channel_id, meters, counts, first_at, last_at, anomaly_id,
                            status, recorded_at)
    VALUES ('anomaly', 0, ARRAY[coalesce(NEW.meter_id, 0)], ARRAY[1], NEW.start_at, NEW.end_at,
            NEW.id, NEW.status, now());
    RETURN NULL;
END $$
"""
# What 0003 and 0004 installed, for the downgrade.
_OPEN = "(kind, meter_id, channel_id, anomaly_id) WHERE txid IS NULL"
_OLD_SERIES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION amigate_series_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO changes AS c (txid, kind, meter_id, channel_id, anomaly_id, first_at, last_at,
                              rows, recorded_at)
    SELECT NULL, TG_ARGV[0], meter_id, channel_id, 0, min(ts), max(ts), count(*), now()
    FROM new_rows GROUP BY meter_id, channel_id
    ON CONFLICT {_OPEN} DO UPDATE SET
        first_at = least(c.first_at, excluded.first_at),
        last_at = greatest(c.last_at, excluded.last_at), rows = c.rows + excluded.rows;
    RETURN NULL;
END $$
"""
_OLD_ANOMALY_FUNCTION = f"""
CREATE OR REPLACE FUNCTION amigate_anomaly_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status IS NOT DISTINCT FROM NEW.status THEN
        RETURN NULL;
    END IF;
    INSERT INTO changes AS c (txid, kind, meter_id, channel_id, anomaly_id, first_at, last_at,
                              rows, status, recorded_at)
    VALUES (NULL, 'anomaly', coalesce(NEW.meter_id, 0), 0, NEW.id, NEW.start_at, NEW.end_at, 1,
            NEW.status, now())
    ON CONFLICT {_OPEN} DO UPDATE SET
        status = excluded.status, first_at = excluded.first_at, last_at = excluded.last_at,
        rows = c.rows + 1;
    RETURN NULL;
END $$
"""
_OLD_TOTALS_FUNCTION = f"""
CREATE OR REPLACE FUNCTION amigate_day_totals_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({_TOTALS_LOCK});
    DELETE FROM day_totals d USING (
        SELECT meter_id, channel_id, min(ts) AS lo, max(ts) AS hi FROM new_rows
        GROUP BY meter_id, channel_id
    ) n
    WHERE d.meter_id = n.meter_id AND d.channel_id = n.channel_id
      AND d.day_start > n.lo - interval '1 day' AND d.day_start <= n.hi;
    RETURN NULL;
END $$
"""


def _ints() -> sa.types.TypeEngine[object]:
    return postgresql.ARRAY(sa.Integer()).with_variant(sa.JSON(), "sqlite")


def upgrade() -> None:
    ts = amigate.storage.types.UtcTimestamp(timezone=True)
    op.create_table(
        "change_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("meters", _ints(), nullable=False),
        sa.Column("counts", _ints(), nullable=False),
        sa.Column("first_at", ts, nullable=True),
        sa.Column("last_at", ts, nullable=True),
        sa.Column("anomaly_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("recorded_at", ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_log")),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in _SERIES:  # one trigger a table now does both jobs
            op.execute(f"DROP TRIGGER IF EXISTS day_totals_{table} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS amigate_day_totals_stale()")
        op.execute(_SERIES_FUNCTION)
        op.execute(_ANOMALY_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_OLD_SERIES_FUNCTION)
        op.execute(_OLD_ANOMALY_FUNCTION)
        op.execute(_OLD_TOTALS_FUNCTION)
        for table in _SERIES:
            op.execute(
                f"CREATE TRIGGER day_totals_{table} AFTER INSERT ON {table} "
                "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
                "EXECUTE FUNCTION amigate_day_totals_stale()"
            )
    op.drop_table("change_log")
