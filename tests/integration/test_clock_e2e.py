"""Meter clocks against the DL/T 645 simulator over loopback TCP: check, sync once, corrected."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from amigate.clocks import CLOCK_OFFSET, ClockPolicy
from amigate.domain import Meter, Protocol
from amigate.drivers import Dlt645Client
from amigate.fleet import BusConfig, ReadPlan
from amigate.meter_models import load_models
from amigate.poller import BusWorker, Dlt645Reader
from amigate.simulators import BusSpec, ManualClock, MeterSpec, build_bus, serve_tcp
from amigate.spool import Spool
from amigate.storage import Store, make_engine, upgrade
from amigate.transports import open_transport

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 4, 4, 0, tzinfo=UTC)
IV = timedelta(minutes=15)
#: Off by 2 min (corrected), right, and off by 15 min (beyond the 5 min a meter accepts).
OFFSETS = {"000000000001": 120.0, "000000000002": 0.0, "000000000003": 900.0}


async def test_a_meter_clock_off_by_two_minutes_is_flagged_and_synced_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models = load_models()
    clock = ManualClock(T0)
    spec = BusSpec(
        name="feeder",
        meters=tuple(
            MeterSpec(address=a, model="dlt645-2007-single-phase",
                      load={"kind": "constant", "kw": "1.2", "noise": 0}, clock_offset_s=off)
            for a, off in OFFSETS.items()
        ),
    )  # fmt: skip
    simulated = build_bus(spec, models=models, clock=clock, history_days=1)
    server = await serve_tcp(simulated)
    url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    transport = await open_transport(url)
    client = Dlt645Client(transport, timeout=0.3, retries=0, quiet=0.05)
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    upgrade(engine)
    store = Store(engine)
    try:
        meters = [
            store.add_meter(Meter(address=a, protocol=Protocol.DLT645_2007,
                                  model="dlt645-2007-single-phase", bus="feeder"))
            for a in OFFSETS
        ]  # fmt: skip
        plan = ReadPlan(spread_s=0, timeout_s=0.3, retries=0)
        bus = BusConfig(name="feeder", protocol=Protocol.DLT645_2007, url=url, plan=plan,
                        meters=tuple(meters))  # fmt: skip

        async def sleep(seconds: float) -> None:
            clock.advance(seconds)
            await asyncio.sleep(0)

        readers = {m.id: Dlt645Reader(client, m.address) for m in meters if m.id is not None}
        spool = tmp_path / "feeder.spool"
        worker = BusWorker(bus, meters, readers, store, models, clock=clock, sleep=sleep,
                           clock_policy=ClockPolicy(),
                           spool=Spool(spool, max_rows=10_000))  # fmt: skip
        await worker.restore()
        caplog.set_level(logging.INFO, logger="amigate.clocks")
        for k in range(1, 9):
            clock.now = T0 + k * IV
            await worker.poll_cycle(T0 + k * IV)
        off_id, good_id, far_id = (m.id for m in meters)
        assert off_id is not None and good_id is not None and far_id is not None
        checks = store.clock_checks(off_id)
        assert len(checks) == 2  # the daily check, and the re-check after the sync
        assert checks[0].offset_s == pytest.approx(120.0, abs=1.0)
        assert not checks[0].corrected
        assert abs(checks[1].offset_s) < 1.0 and checks[1].corrected
        assert [abs(c.offset_s) < 1.0 for c in store.clock_checks(good_id)] == [True]
        assert worker.clocks.syncs == 1
        syncs = [r for r in caplog.records if r.getMessage().startswith("bus feeder: broadcast")]
        assert len(syncs) == 1 and "+120" in syncs[0].getMessage()
        assert "000000000003" not in syncs[0].getMessage()
        # The meter 15 min off: reported once as beyond the limit, and it refused the sync.
        beyond = [r for r in caplog.records if "beyond the 300 s" in r.getMessage()]
        assert len(beyond) == 1 and "000000000003" in beyond[0].getMessage()
        assert simulated.meters["000000000003"].syncs_refused == 1
        assert all(c.offset_s == pytest.approx(900.0, abs=1.0) and not c.corrected
                   for c in store.clock_checks(far_id))  # fmt: skip
        # The corrected meter's episode exists once and ended at the re-check; the
        # other one stays open.
        assert [a.meter_id for a in store.open_anomalies(CLOCK_OFFSET)] == [far_id]
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT meter_id, end_at FROM anomalies WHERE kind = 'clock_offset' "
                     "ORDER BY meter_id")
            ).all()  # fmt: skip
        assert [(r[0], r[1] is not None) for r in rows] == [(off_id, True), (far_id, False)]

        # After a restart the same day, the bus sends no second sync, even though the
        # clock is off again; a bus without that memory would.
        simulated.meters["000000000001"].physics.jump_clock(120)
        hourly = ClockPolicy(check_interval=timedelta(hours=1))
        for path, syncs in ((spool, 0), (tmp_path / "other.spool", 1)):
            again = BusWorker(bus, meters, readers, store, models, clock=clock, sleep=sleep,
                              clock_policy=hourly,
                              spool=Spool(path, max_rows=10_000))  # fmt: skip
            await again.restore()
            for k in range(9, 14):
                clock.now = T0 + k * IV
                await again.poll_cycle(T0 + k * IV)
            assert again.clocks.syncs == syncs, path
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()
        engine.dispose()
