"""Ingest benchmark: 1,000,000 interval rows through the storage API into SQLite and TimescaleDB.

10,000 meters x 100 intervals of 15 minutes, arriving time-major (all meters for
one interval, then the next) as a head-end delivers them. On TimescaleDB the same
run measures a baseline: a raw binary COPY of the same rows into a hypertable with
the same columns and key but no idempotency. Then the batch is ingested again (a
replay), which must add nothing.

    python bench/ingest.py [--meters N] [--intervals N] [--rounds N] [--pg-url URL] [--skip-pg]

Each measurement is repeated (--rounds, default 2) on emptied tables and the best
is reported beside every individual run: the machine may be shared.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from amigate.domain import Interval
from amigate.storage import Store, make_engine, upgrade
from amigate.storage.ingest import INTERVALS

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5433/amigate_bench"


def make_intervals(meters: int, intervals: int) -> list[Interval]:
    """Time-major intervals with realistic values (0.01 kWh resolution)."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    step = timedelta(minutes=15)
    values = [Decimal(v).scaleb(-2) for v in range(1, 1000)]
    out = []
    for i in range(intervals):
        start, end = t0 + i * step, t0 + (i + 1) * step
        for m in range(1, meters + 1):
            out.append(Interval(meter_id=m, channel="1.8.0", start=start, end=end,
                                value=values[(m * 7 + i) % len(values)]))  # fmt: skip
    return out


def timed(label: str, rows: int, fn: object) -> tuple[float, object]:
    """Run ``fn`` once and print its rate."""
    gc.collect()
    started = time.perf_counter()
    result = fn()  # type: ignore[operator]
    elapsed = time.perf_counter() - started
    rate = rows / elapsed
    print(f"  {label:<44} {elapsed:7.2f} s  {rate:>11,.0f} rows/s")
    return rate, result


def bench_sqlite(batch: list[Interval], rounds: int) -> None:
    """Fresh database each round: a raw baseline, the first ingest, then a replay.

    The baseline is plain ``executemany`` of the same rows, already converted,
    into a table of the same shape, in one transaction, without idempotency: the
    most SQLite itself does for these rows on this machine at this moment.
    """
    print("SQLite (embedded default, WAL):")
    epoch0 = int(batch[0].start.timestamp())
    raw_rows = [
        (iv.meter_id, 1, epoch0 + 900 * (i // 10_000), 900, int(iv.value.scaleb(6)), 0, 0)  # type: ignore[union-attr]
        for i, iv in enumerate(batch)
    ]  # fmt: skip
    bases, firsts, replays = [], [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
            upgrade(engine)
            store = Store(engine)

            bases.append(timed("baseline: raw executemany (same key, no checks)", len(batch),
                               lambda e=engine: _sqlite_raw_insert(e, raw_rows))[0])  # fmt: skip
            first, result = timed("idempotent ingest, new rows", len(batch),
                                  lambda s=store: s.ingest_intervals(batch))  # fmt: skip
            replay, again = timed("replay of the same rows", len(batch),
                                  lambda s=store: s.ingest_intervals(batch))  # fmt: skip
            stored = store.count("intervals")
            engine.dispose()
        print(
            f"    stored {stored:,} rows; first added {result.inserted:,}, "  # type: ignore[attr-defined]
            f"replay added {again.inserted}"  # type: ignore[attr-defined]
        )
        firsts.append(first)
        replays.append(replay)
    base, first, replay = max(bases), max(firsts), max(replays)
    print(f"  best: raw {base:,.0f}, ingest {first:,.0f}, replay {replay:,.0f} rows/s")
    print(f"  ingest / raw = {first / base:.2f}   replay / ingest = {replay / first:.2f}")


def _sqlite_raw_insert(engine: Engine, rows: list[tuple[int, ...]]) -> None:
    """Plain executemany into a copy of ``intervals`` (same columns and key), one transaction."""
    raw = engine.raw_connection()
    cursor = raw.cursor()
    ddl = cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'intervals'").fetchone()[0]
    cursor.execute(ddl.replace("intervals", "intervals_raw", 1))
    cursor.executemany("INSERT INTO intervals_raw VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    raw.commit()
    raw.close()


def _fresh_pg(url: str) -> Engine:
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()
    engine = make_engine(url)
    upgrade(engine)
    return engine


def _settle(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
        conn.execute(text("CHECKPOINT"))


def bench_timescaledb(batch: list[Interval], url: str, rounds: int) -> None:
    """Each round: baseline COPY, first ingest, replay, on emptied tables."""
    engine = _fresh_pg(url)
    with engine.connect() as conn:
        versions = conn.execute(text(
            "SELECT extversion, current_setting('timescaledb.license', true), "
            "current_setting('server_version') FROM pg_extension WHERE extname = 'timescaledb'"
        )).one()  # fmt: skip
    print(f"TimescaleDB {versions[0]} ({versions[1]} license), PostgreSQL {versions[2]}:")
    store = Store(engine)
    # The baseline gets the rows already converted: the raw COPY pays nothing of ours.
    cid = store.channel_id("1.8.0")
    raw_rows = [
        (iv.meter_id, cid, iv.start, 900, int(iv.value.scaleb(6)), 0, 0)  # type: ignore[union-attr]
        for iv in batch
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE intervals_raw (LIKE intervals INCLUDING ALL)"))
        conn.execute(text(
            "SELECT create_hypertable('intervals_raw', by_range('ts', INTERVAL '1 day'),"
            " create_default_indexes => false)"
        ))  # fmt: skip
    _settle(engine)

    def raw_copy() -> None:
        raw = engine.raw_connection()
        conn = raw.driver_connection
        cols = ", ".join(INTERVALS.columns)
        for start in range(0, len(raw_rows), 20_000):
            with (
                conn.transaction(),
                conn.cursor().copy(  # type: ignore[union-attr]
                    f"COPY intervals_raw ({cols}) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(INTERVALS.pg_types)
                for row in raw_rows[start : start + 20_000]:
                    copy.write_row(row)
        raw.close()

    bases, firsts, replays = [], [], []
    for _ in range(rounds):
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE intervals_raw, intervals"))
        _settle(engine)
        bases.append(timed("baseline: raw binary COPY (no idempotency)", len(batch), raw_copy)[0])
        _settle(engine)
        first, result = timed("idempotent ingest, new rows", len(batch),
                              lambda: store.ingest_intervals(batch))  # fmt: skip
        _settle(engine)
        replay, again = timed("replay of the same rows", len(batch),
                              lambda: store.ingest_intervals(batch))  # fmt: skip
        print(
            f"    stored {store.count('intervals'):,} rows; first added {result.inserted:,}, "  # type: ignore[attr-defined]
            f"replay added {again.inserted}"
        )  # type: ignore[attr-defined]
        firsts.append(first)
        replays.append(replay)
    base, first, replay = max(bases), max(firsts), max(replays)
    print(f"  best: raw COPY {base:,.0f}, ingest {first:,.0f}, replay {replay:,.0f} rows/s")
    print(f"  ingest / raw COPY = {first / base:.2f}   replay / ingest = {replay / first:.2f}")
    engine.dispose()


def main() -> None:
    """Parse arguments and run both backends."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--intervals", type=int, default=100)
    parser.add_argument("--pg-url", default=os.environ.get("AMIGATE_BENCH_PG_URL", DEFAULT_PG))
    parser.add_argument("--skip-pg", action="store_true", help="SQLite only")
    parser.add_argument("--rounds", type=int, default=2, help="repeat, report the best")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    batch = make_intervals(args.meters, args.intervals)
    print(f"rows: {len(batch):,} ({args.meters:,} meters x {args.intervals} intervals, time-major)")
    bench_sqlite(batch, args.rounds)
    if not args.skip_pg:
        bench_timescaledb(batch, args.pg_url, args.rounds)


if __name__ == "__main__":
    main()
