"""change feed: PostgreSQL writers append one log row per statement

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

The statement-level triggers of 0003 upserted one open ``changes`` entry per
series a statement wrote: a time-major batch touching 10,000 meters paid 10,000
index-checked upserts per COPY, and idempotent ingest fell from about 0.8 to
0.25 of a raw COPY. Now each statement appends one ``change_log`` row per
channel listing its series (meter, rows, first and last start) as JSON, and an
anomaly created or moved appends one row too; a feed reader, under its advisory
lock, moves the committed log rows into open entries (one per series or anomaly,
in the order they were logged) before it seals them. A log row of a transaction still running
is invisible to the reader and stays for a later one, as open entries did.
SQLite (one writer at a time) keeps writing open entries directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import amigate.storage.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LOG_FUNCTION = """
CREATE OR REPLACE FUNCTION amigate_series_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO change_log (kind, channel_id, series, recorded_at)
    SELECT TG_ARGV[0], channel_id, json_agg(json_build_array(meter_id, n, lo, hi)), now()
    FROM (SELECT meter_id, channel_id, count(*) AS n, min(ts) AS lo, max(ts) AS hi
          FROM new_rows GROUP BY meter_id, channel_id) s
    GROUP BY channel_id;
    RETURN NULL;
END $$
"""
_ANOMALY_LOG_FUNCTION = """
CREATE OR REPLACE FUNCTION amigate_anomaly_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status IS NOT DISTINCT FROM NEW.status THEN
        RETURN NULL;
    END IF;
    INSERT INTO change_log (kind, channel_id, series, recorded_at)
    VALUES ('anomaly', 0, json_build_array(json_build_array(coalesce(NEW.meter_id, 0), 1,
            NEW.start_at, NEW.end_at, NEW.id, NEW.status)), now());
    RETURN NULL;
END $$
"""
_OPEN = "(kind, meter_id, channel_id, anomaly_id) WHERE txid IS NULL"
_ANOMALY_UPSERT_FUNCTION = f"""
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
_UPSERT_FUNCTION = f"""
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


def upgrade() -> None:
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
        sa.Column("series", sa.JSON(), nullable=False),
        sa.Column("recorded_at", amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_log")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_LOG_FUNCTION)
        op.execute(_ANOMALY_LOG_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_UPSERT_FUNCTION)
        op.execute(_ANOMALY_UPSERT_FUNCTION)
    op.drop_table("change_log")
