"""Whole-meter Modbus polls per second: block reads versus one request per point.

50 simulated SDM630 meters (24 points each) behind one Modbus TCP endpoint on
loopback, served by the pymodbus-based simulator; the driver polls every point of
every meter in turn, one request in flight, as through an RS-485 gateway. Block
reads coalesce the 24 points into 3 requests; per-point reads send 24. No wire
time is emulated: this measures the software; on a 9600 bit/s bus the ratio of
requests is what matters (see the reference's timing table).

Usage: python bench/modbus.py [--seconds S] [--meters N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from datetime import UTC, datetime

from amigate.drivers.modbus import ModbusBus, ModbusMeter
from amigate.meter_models import load_models
from amigate.simulators import ManualClock
from amigate.simulators.modbus_meter import ModbusSimMeter
from amigate.simulators.modbus_server import ModbusSimServer


async def _polls(meters: list[ModbusMeter], seconds: float, *, single: bool) -> tuple[float, int]:
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for meter in meters:
            values = await meter.poll(single=single)
            assert all(v.value is not None for v in values)
            done += 1
    return done / (time.perf_counter() - start), done


async def _main(seconds: float, count: int) -> None:
    model = load_models()["sdm630"]
    clock = ManualClock(datetime(2026, 11, 22, 4, 0, tzinfo=UTC))
    sims = [ModbusSimMeter.build(model, i, clock=clock) for i in range(1, count + 1)]
    async with ModbusSimServer(sims) as server:
        url = await server.serve_tcp()
        async with ModbusBus(url, switch_pause=0.0) as bus:
            meters = [
                ModbusMeter(bus, model, i, timeout=1.0, retries=0) for i in range(1, count + 1)
            ]
            await _polls(meters, 0.2, single=False)  # warm up
            before = bus.stats.requests
            block_rate, block_polls = await _polls(meters, seconds, single=False)
            block_requests = (bus.stats.requests - before) / block_polls
            before = bus.stats.requests
            single_rate, single_polls = await _polls(meters, seconds, single=True)
            single_requests = (bus.stats.requests - before) / single_polls
    print(f"{count} x {model.id} ({len(model.points)} points) over {url}")
    for label, rate, requests in (
        ("block reads", block_rate, block_requests),
        ("one per point", single_rate, single_requests),
    ):
        print(f"{label + ':':<16} {rate:8.1f} whole-meter polls/s ({requests:.0f} requests/poll)")
    print(f"ratio:           {block_rate / single_rate:8.1f} x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per mode (default 3)")
    parser.add_argument("--meters", type=int, default=50, help="simulated meters (default 50)")
    args = parser.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    asyncio.run(_main(args.seconds, args.meters))


if __name__ == "__main__":
    main()
