"""kill -9 of `amigate run --fleet` mid-collection, then a restart: nothing lost, nothing doubled.

The service reads simulated DL/T 645 meters over loopback TCP on a clock running
30 times faster (1-minute intervals every 2 s), is killed with SIGKILL, stays
down for a few intervals and is started again. The stored series must then have
no duplicate key, cover every slot from its first interval to its last (the
hole explicitly MISSING, bridged by a span that backfill may since have replaced
with the meter's load-profile records), and add up exactly to the register.
"""

from __future__ import annotations

import itertools
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from amigate.domain import Quality, Source
from amigate.normalize import SPAN_REASON
from amigate.storage import Store, make_engine
from tests.helpers import free_port
from tests.integration.test_service_e2e import (
    FLEET,
    SCENARIO,
    _intervals,
    _port_open,
    _process,
    _stop_cleanly,
    _wait,
)

pytestmark = pytest.mark.integration

IV = timedelta(minutes=1)
_DUPLICATES = """
SELECT count(*) FROM (SELECT 1 FROM {table} GROUP BY {key} HAVING count(*) > 1) AS d
"""


def test_kill_9_mid_collection_then_restart_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    sim_port = free_port()
    (tmp_path / "scenario.toml").write_text(SCENARIO.format(port=sim_port))
    meters = "\n".join(
        f'[[bus.meters]]\naddress = "00000000000{i}"\nmodel = "dlt645-2007-single-phase"'
        for i in (1, 2, 3)
    )
    (tmp_path / "fleet.toml").write_text(FLEET.format(port=sim_port, meters=meters))
    db = tmp_path / "run.db"
    # both runs map wall time to the same scaled time: the restart carries on from there
    origin = datetime.now(UTC).isoformat()
    env = {"AMIGATE_DATABASE_URL": f"sqlite:///{db}", "AMIGATE_TIME_SCALE": "30",
           "AMIGATE_TIME_ORIGIN": origin}  # fmt: skip
    run = ("run", "--fleet", "fleet.toml")
    with _process("sim", "dlt645", "--scenario", "scenario.toml", cwd=tmp_path) as sim:
        _wait("the simulator", lambda: _port_open(sim_port), sim, 30)
        with _process(*run, "--port", str(free_port()), cwd=tmp_path, env=env) as proc:
            _wait("intervals in the database", lambda: _intervals(db) >= 6, proc, 60)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        assert (tmp_path / "amigate-spool" / "feeder.spool").is_file()
        before = _intervals(db)
        time.sleep(5)  # a few intervals pass with nobody reading
        with _process(*run, "--port", str(free_port()), cwd=tmp_path, env=env) as proc:
            _wait("intervals after the restart", lambda: _intervals(db) >= before + 9, proc, 60)
            output = _stop_cleanly(proc)
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=10)
    assert "bus feeder: stopped" in output
    engine = make_engine(f"sqlite:///{db}")
    try:
        _check(Store(engine))
    finally:
        engine.dispose()


def _check(store: Store) -> None:
    with store.engine.connect() as conn:
        for table, key in (
            ("intervals", "meter_id, channel_id, ts"),
            ("interval_versions", "meter_id, channel_id, ts, version"),
            ("register_reads", "meter_id, channel_id, read_at"),
            ("samples", "meter_id, channel_id, at"),
        ):
            dup = conn.execute(text(_DUPLICATES.format(table=table, key=key))).scalar_one()
            assert dup == 0, table
    start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    meters = store.meters()
    assert len(meters) == 3
    holes = 0
    for meter in meters:
        assert meter.id is not None
        originals = store.intervals(meter.id, "1.8.0", start, end, version="original")
        assert originals, meter.address
        for before, after in itertools.pairwise(originals):
            assert before.end == after.start, f"{meter.address}: slot {before.end} absent"
        assert all(iv.duration == IV for iv in originals)
        spans = [
            iv for iv in store.intervals(meter.id, "1.8.0", start, end, version="all")
            if iv.version > 1 and SPAN_REASON in iv.reason_codes
        ]  # fmt: skip
        missing = {iv.start for iv in originals if iv.quality is Quality.MISSING}
        holes += len(missing)
        bridged = {s.start + k * IV for s in spans for k in range(int(s.duration / IV))}
        assert missing <= bridged, f"{meter.address}: a missing slot without its span"
        reads = [
            r for r in store.register_reads(meter.id, "1.8.0", start, end)
            if r.source is Source.POLL
        ]  # fmt: skip
        # What billing sees (spans, or what backfill replaced them with) adds up exactly.
        latest = store.intervals(meter.id, "1.8.0", start, end)
        energy = sum(iv.value or 0 for iv in latest)
        assert energy == reads[-1].value - reads[0].value, meter.address
        assert originals[0].start == reads[0].read_at.replace(second=0, microsecond=0)
    assert holes > 0  # the outage really left a hole, kept explicit
