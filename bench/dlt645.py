"""DL/T 645 read transactions per second against the simulator over loopback TCP.

100 meters on one virtual bus. First sequentially, one request in flight, as on a
half-duplex RS-485 bus; then over several TCP connections in parallel (several
serial servers). Wire-time emulation is off: this measures the software, not
2400 bit/s (where one read of a 4-byte register takes about 0.2 s on the wire).
Also runs the codec benchmark (bench/dlt645_codec.py) when it is present.

Usage: python bench/dlt645.py [--seconds S] [--connections N]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import time
from pathlib import Path

from amigate.drivers import Dlt645Client
from amigate.meter_models import load_models
from amigate.simulators import BusSpec, MeterSpec, build_bus, serve_tcp
from amigate.transports import open_transport

METERS = 100
DIS = (0x00010000, 0x0001FF00, 0x02010100, 0x02030000, 0x04000102)


async def _reader(url: str, addresses: list[str], seconds: float) -> int:
    transport = await open_transport(url)
    client = Dlt645Client(transport, retries=0)
    done = 0
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            address = addresses[done % len(addresses)]
            await client.read(address, DIS[done % len(DIS)])
            done += 1
    finally:
        await transport.aclose()
    return done


async def run(seconds: float, connections: int) -> None:
    models = load_models()
    meters = tuple(
        MeterSpec(
            address=f"{n + 1:012d}",
            model="dlt645-2007-three-phase" if n % 4 == 0 else "dlt645-2007-single-phase",
        )
        for n in range(METERS)
    )
    bus = build_bus(BusSpec(name="bench", meters=meters), models=models, history_days=1)
    server = await serve_tcp(bus)
    url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    addresses = [m.address for m in meters]
    now = bus.clock()
    for meter in bus.meters.values():
        meter.sync(now)  # integrate each meter's day of history before measuring
    await _reader(url, addresses, 0.3)

    count = await _reader(url, addresses, seconds)
    print(f"sequential, 1 connection, {METERS} meters: {count / seconds:8.0f} reads/s")

    shares = [addresses[i::connections] for i in range(connections)]
    counts = await asyncio.gather(*(_reader(url, share, seconds) for share in shares))
    total = sum(counts)
    print(
        f"parallel, {connections} connections, {METERS} meters: {total / seconds:8.0f} reads/s "
        f"(per connection: {', '.join(f'{c / seconds:.0f}' for c in counts)})"
    )
    server.close()
    await server.wait_closed()


def _codec_bench(seconds: float) -> None:
    path = Path(__file__).with_name("dlt645_codec.py")
    spec = importlib.util.spec_from_file_location("dlt645_codec", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["dlt645_codec"] = module
    spec.loader.exec_module(module)
    result = module.run_codec_bench(seconds)
    print("codec (bench/dlt645_codec.py):")
    for key, value in result.items():
        if key != "frames":
            if key.endswith("ratio") and isinstance(value, int | float):
                shown = f"{value:.2f}x"
            else:
                shown = f"{value:,.0f}" if isinstance(value, int | float) else value
            print(f"  {key}: {shown}")


def main() -> None:
    """Run the benchmarks and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each run")
    parser.add_argument("--connections", type=int, default=4, help="parallel TCP connections")
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.connections))
    _codec_bench(args.seconds)


if __name__ == "__main__":
    main()
