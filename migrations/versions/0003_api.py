"""billing API: the change feed

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

``changes`` is the change feed billing pulls from. Every statement that stores
intervals or interval versions adds to one *open* entry per series (``txid``
NULL: the range of starts and the row count), and every anomaly created or
moved to another status to one open entry per anomaly. A feed reader seals the
open entries it can see with the next generation number (``txid``) and returns
sealed entries by (generation, id): an entry written by a transaction still
running is invisible to the reader, stays open and is sealed by a later reader,
so nothing appears behind a cursor already handed out.

* PostgreSQL: statement-level triggers with transition tables on the
  hypertables (one upsert per series and statement, not per row) and a
  row-level trigger on anomalies; triggers, so no write path can forget the feed
  and the entry commits with the data. Readers take an advisory lock to seal.
* SQLite (one writer at a time): a per-row trigger would halve bulk ingest, so
  the ingest transaction itself adds the entries of its series (see
  ``amigate.storage.feed_queries.record_sqlite``) before it commits; anomalies
  have row-level triggers.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import amigate.storage.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SERIES = {"intervals": "intervals", "interval_versions": "versions"}

_OPEN = "(kind, meter_id, channel_id, anomaly_id) WHERE txid IS NULL"
_PG_SERIES_FUNCTION = f"""
CREATE FUNCTION amigate_series_changes() RETURNS trigger LANGUAGE plpgsql AS $$
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
_PG_ANOMALY_FUNCTION = f"""
CREATE FUNCTION amigate_anomaly_changes() RETURNS trigger LANGUAGE plpgsql AS $$
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
_SQLITE_NOW = "CAST(strftime('%s', 'now') AS INTEGER)"


def _sqlite_anomaly_trigger(event: str) -> str:
    when = " OF status" if event == "UPDATE" else ""
    condition = " WHEN OLD.status IS NOT NEW.status" if event == "UPDATE" else ""
    return f"""
CREATE TRIGGER changes_anomalies_{event.lower()} AFTER {event}{when} ON anomalies{condition} BEGIN
    INSERT INTO changes (txid, kind, meter_id, channel_id, anomaly_id, first_at, last_at, rows,
                         status, recorded_at)
    VALUES (NULL, 'anomaly', coalesce(NEW.meter_id, 0), 0, NEW.id, NEW.start_at, NEW.end_at, 1,
            NEW.status, {_SQLITE_NOW})
    ON CONFLICT (kind, meter_id, channel_id, anomaly_id) WHERE txid IS NULL DO UPDATE SET
        status = excluded.status, first_at = excluded.first_at, last_at = excluded.last_at,
        rows = rows + 1;
END
"""


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(always=False),
            nullable=False,
        ),
        sa.Column("txid", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("meter_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("anomaly_id", sa.BigInteger(), nullable=False),
        sa.Column("first_at", amigate.storage.types.UtcTimestamp(timezone=True), nullable=True),
        sa.Column("last_at", amigate.storage.types.UtcTimestamp(timezone=True), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("recorded_at", amigate.storage.types.UtcTimestamp(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
    )
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.create_index("ix_changes_txid_id", ["txid", "id"], unique=False)
        batch_op.create_index(
            "uq_changes_open",
            ["kind", "meter_id", "channel_id", "anomaly_id"],
            unique=True,
            sqlite_where=sa.text("txid IS NULL"),
            postgresql_where=sa.text("txid IS NULL"),
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_SERIES_FUNCTION)
        op.execute(_PG_ANOMALY_FUNCTION)
        for table, kind in _SERIES.items():
            op.execute(
                f"CREATE TRIGGER changes_{table} AFTER INSERT ON {table} "
                "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
                f"EXECUTE FUNCTION amigate_series_changes('{kind}')"
            )
        op.execute(
            "CREATE TRIGGER changes_anomalies AFTER INSERT OR UPDATE OF status ON anomalies "
            "FOR EACH ROW EXECUTE FUNCTION amigate_anomaly_changes()"
        )
    else:
        op.execute(_sqlite_anomaly_trigger("INSERT"))
        op.execute(_sqlite_anomaly_trigger("UPDATE"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in (*_SERIES, "anomalies"):
            op.execute(f"DROP TRIGGER IF EXISTS changes_{table} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS amigate_series_changes()")
        op.execute("DROP FUNCTION IF EXISTS amigate_anomaly_changes()")
    else:
        for name in ("anomalies_insert", "anomalies_update"):
            op.execute(f"DROP TRIGGER IF EXISTS changes_{name}")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_changes_open",
            sqlite_where=sa.text("txid IS NULL"),
            postgresql_where=sa.text("txid IS NULL"),
        )
        batch_op.drop_index("ix_changes_txid_id")
    op.drop_table("changes")
