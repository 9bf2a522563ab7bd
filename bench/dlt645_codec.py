"""DL/T 645 codec benchmark: frames/s for decode (with values) and encode, against PyPI ``dlt645``.

Ours: the bytes of a reply go through ``Dlt645Buffer`` (feed + next_frame) and
``decode_read_response`` (DI check, BCD to Decimal, units, channels); encode is
``build_read_request`` + ``encode_frame``. The baseline is the framing alone of the
``dlt645`` package (``pip install "dlt645>=3,<4"``, the ``bench`` extra):
``DLT645Protocol.deserialize`` on the same bytes, which extracts a frame and removes
the 33H offset but decodes no values.

Frame mix: one reply to each read a poller typically issues per meter, every frame
weighted equally, both sides parsing exactly the same bytes (``FRAMES``):

* 00010000  forward active energy total, 1 value (no preamble)
* 0001FF00  forward active energy block, total + 4 tariffs, 5 values (FE preamble)
* 0201FF00  voltage block A/B/C, 3 values (FE preamble)
* 0202FF00  current block A/B/C, signed, 3 values (FE preamble)
* 0203FF00  active power block total/A/B/C, signed, one negative, 4 values (FE preamble)
* 04000101  date YYMMDDWW -> datetime
* 04000102  time hhmmss -> "hh:mm:ss"

All but 0203FF00 are published captures (sources in tests/codecs/test_dlt645_vectors.py);
no public capture of 0203FF00 exists, so that one is built with ``build_read_response``.

Method: every step (ours and theirs) runs in turn, round after round, in one process,
each run lasting about 4 ms; the numbers are the medians over the rounds, and each ratio
is the median of the per-round ratios (two runs a few milliseconds apart). Runs are
timed in process CPU time, the same clock for both sides, so that time the shared
machine gives to other processes counts for neither.

    python bench/dlt645_codec.py [--seconds 4] [--json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amigate.codecs import (
    Dlt645Buffer,
    Dlt645Version,
    build_read_request,
    decode_read_response,
    encode_frame,
)


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


FRAMES: dict[str, bytes] = {
    # GO645: meter 000000000001, 112280.26 kWh.
    "energy total 00010000": _hex("68 01 00 00 00 00 00 68 91 08 33 33 34 33 59 B3 55 44 DC 16"),
    # SANSHENG simulator: total + 4 tariffs.
    "energy block 0001FF00": _hex(
        "FE FE FE FE 68 12 00 00 00 10 20 68 91 18 33 32 34 33 5C 34 33 33 95 33 33 33"
        " 93 33 33 33 36 33 33 33 35 33 33 33 74 16"
    ),
    # SOURCECM: three-phase meter 181226034194.
    "voltage block 0201FF00": _hex(
        "FE FE FE FE 68 94 41 03 26 12 18 68 91 0A 33 32 34 35 36 56 33 33 33 33 B9 16"
    ),
    "current block 0202FF00": _hex(
        "FE FE FE FE 68 94 41 03 26 12 18 68 91 0D 33 32 35 35 BB 34 33 33 33 33 33 33 33 B9 16"
    ),
    # Built: 1.2345 kW total, 0.4120 / 0.8540 / -0.0315 kW per phase.
    "active power block 0203FF00": _hex(
        "FE FE FE FE 68 94 41 03 26 12 18 68 91 10 33 32 36 35 78 56 34 53 74 33 73 B8 33 48"
        " 36 B3 F4 16"
    ),
    # SANSHENG simulator: date 2016-01-11, time 21:53:55.
    "date 04000101": _hex("68 12 00 00 00 10 20 68 91 08 34 34 33 37 34 44 34 49 72 16"),
    "time 04000102": _hex("68 12 00 00 00 10 20 68 91 07 35 34 33 37 88 86 54 DF 16"),
}
REQUESTS = (("000000000161", 0x00010000), ("201000000012", 0x0201FF00))
_MIN_ROUNDS = 5
_SLICE_SECONDS = 0.004
#: CPU time of this process: single-threaded, CPU-bound steps, immune to other processes.
_clock = time.process_time


def _rounds(steps: dict[str, Callable[[int], int]], seconds: float) -> dict[str, list[float]]:
    """Run every step in turn, round after round, for ``seconds``; frames/s of each run.

    Each round runs every step once, one after the other, so that ours and the
    baseline see the same background load on a shared, noisy machine. Each step's
    repeat count is set once so that its run lasts about ``_SLICE_SECONDS``: fast and
    slow steps are then equally exposed to a pause of the machine.

    Args:
        steps: name -> callable that runs the given number of repeats and returns
            how many frames it handled.
        seconds: total time budget (at least ``_MIN_ROUNDS`` rounds are run).

    Returns:
        name -> frames/s of each round, in round order.
    """
    repeats: dict[str, int] = {}
    for name, step in steps.items():
        step(10)  # warm-up: catalogue layouts, generated decoders, imports
        start = _clock()
        step(10)
        per_repeat = (_clock() - start) / 10
        repeats[name] = max(1, round(_SLICE_SECONDS / per_repeat))
    rates: dict[str, list[float]] = {name: [] for name in steps}
    deadline = _clock() + seconds
    done_rounds = 0
    while _clock() < deadline or done_rounds < _MIN_ROUNDS:
        for name, step in steps.items():
            start = _clock()
            done = step(repeats[name])
            rates[name].append(done / (_clock() - start))
        done_rounds += 1
    return rates


def _ratio(ours: list[float], theirs: list[float]) -> tuple[float, float, float]:
    """Median and quartiles of the per-round ratios ours/theirs.

    A round's two runs are taken a few milliseconds apart, so their ratio cancels
    most of the machine's drift; the median of the rounds drops the outliers.

    Returns:
        (median, lower quartile, upper quartile).
    """
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    low, median, high = statistics.quantiles(ratios, n=4)
    return median, low, high


def _ours_decode(frames: list[bytes]) -> Callable[[int], int]:
    buffer = Dlt645Buffer()
    version = Dlt645Version.V2007

    def step(rounds: int) -> int:
        for _ in range(rounds):
            for raw in frames:
                buffer.feed(raw)
                frame = buffer.next_frame()
                assert frame is not None
                decode_read_response(frame, version=version)
        return rounds * len(frames)

    return step


def _ours_framing(frames: list[bytes]) -> Callable[[int], int]:
    buffer = Dlt645Buffer()

    def step(rounds: int) -> int:
        for _ in range(rounds):
            for raw in frames:
                buffer.feed(raw)
                buffer.next_frame()
        return rounds * len(frames)

    return step


def _ours_encode() -> Callable[[int], int]:
    def step(rounds: int) -> int:
        for _ in range(rounds):
            for address, di in REQUESTS:
                encode_frame(build_read_request(address, di))
        return rounds * len(REQUESTS)

    return step


def _baseline() -> Any:
    """Return ``DLT645Protocol`` from the installed ``dlt645`` package, or ``None``.

    Run as a script, this directory is first on ``sys.path`` and its ``dlt645.py``
    (the transaction benchmark) would shadow the package; it is left out for the import.
    """
    here = Path(__file__).resolve().parent
    saved_path = sys.path[:]
    shadow = sys.modules.get("dlt645")
    if shadow is not None and not hasattr(shadow, "DLT645Protocol"):
        del sys.modules["dlt645"]
    try:
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
        module = importlib.import_module("dlt645")
    except ImportError:
        return None
    finally:
        sys.path[:] = saved_path
        if shadow is not None and not hasattr(shadow, "DLT645Protocol"):
            sys.modules["dlt645"] = shadow
    return getattr(module, "DLT645Protocol", None)


def _theirs_decode(frames: list[bytes]) -> Callable[[int], int] | None:
    DLT645Protocol = _baseline()
    if DLT645Protocol is None:
        return None

    def step(rounds: int) -> int:
        for _ in range(rounds):
            for raw in frames:
                DLT645Protocol.deserialize(raw)
        return rounds * len(frames)

    return step


def _theirs_encode() -> Callable[[int], int] | None:
    DLT645Protocol = _baseline()
    if DLT645Protocol is None:
        return None
    requests = [(bytes.fromhex(a)[::-1], di.to_bytes(4, "little")) for a, di in REQUESTS]

    def step(rounds: int) -> int:
        for _ in range(rounds):
            for address, di in requests:
                DLT645Protocol.build_frame(address, 0x11, di, 4)
        return rounds * len(requests)

    return step


def _check_same_work(frames: list[bytes]) -> None:
    """Make sure every frame yields values for us and the same DATA field for the baseline.

    Raises:
        AssertionError: a frame that one side would not fully decode.
    """
    protocol = _baseline()
    for raw in frames:
        buffer = Dlt645Buffer()
        buffer.feed(raw)
        frame = buffer.next_frame()
        assert frame is not None and len(buffer) == 0, raw.hex()
        reply = decode_read_response(frame, version=Dlt645Version.V2007)
        assert reply.values and all(v.value is not None for v in reply.values), reply
        if protocol is not None:
            assert bytes(protocol.deserialize(raw).data) == frame.data, raw.hex()


def run_codec_bench(seconds: float) -> dict[str, Any]:
    """Measure codec throughput, ours and the baseline interleaved, for about ``seconds``.

    Args:
        seconds: total time budget.

    Returns:
        Medians over the rounds of frames/s for our decode with value extraction,
        our framing alone and our encode; the ``dlt645`` package's framing and encode
        when it is installed (else ``None``); and the medians of the per-round ratios
        ours/theirs, with the quartiles of the decode ratio.
    """
    frames = list(FRAMES.values())
    _check_same_work(frames)
    # The two decode steps run back to back in each round: their ratio is the target.
    steps: dict[str, Callable[[int], int]] = {"ours_decode_fps": _ours_decode(frames)}
    theirs_decode = _theirs_decode(frames)
    theirs_encode = _theirs_encode()
    if theirs_decode is not None:
        steps["theirs_decode_fps"] = theirs_decode
    steps["ours_framing_fps"] = _ours_framing(frames)
    steps["ours_encode_fps"] = _ours_encode()
    if theirs_encode is not None:
        steps["theirs_encode_fps"] = theirs_encode
    rates = _rounds(steps, seconds)
    result: dict[str, Any] = {
        "frames": list(FRAMES),
        "rounds": len(rates["ours_decode_fps"]),
        "theirs_decode_fps": None,
        "theirs_encode_fps": None,
        "decode_ratio": None,
        "framing_ratio": None,
        "encode_ratio": None,
        **{name: statistics.median(values) for name, values in rates.items()},
    }
    if theirs_decode is not None and theirs_encode is not None:
        from importlib.metadata import version

        result["theirs_package"] = f"dlt645 {version('dlt645')}"
        theirs = rates["theirs_decode_fps"]
        result["decode_ratio"], low, high = _ratio(rates["ours_decode_fps"], theirs)
        result["decode_ratio_quartiles"] = f"{low:.2f}-{high:.2f}"
        result["framing_ratio"] = _ratio(rates["ours_framing_fps"], theirs)[0]
        result["encode_ratio"] = _ratio(rates["ours_encode_fps"], rates["theirs_encode_fps"])[0]
    return result


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="total time budget")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = run_codec_bench(args.seconds)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"frames: {', '.join(result['frames'])}")
    print(f"medians of {result['rounds']} interleaved rounds")
    print(f"ours   decode+values  {result['ours_decode_fps']:>12,.0f} frames/s")
    print(f"ours   framing only   {result['ours_framing_fps']:>12,.0f} frames/s")
    print(f"ours   encode         {result['ours_encode_fps']:>12,.0f} frames/s")
    if result["theirs_decode_fps"] is None:
        print("baseline: the dlt645 package is not installed (pip install 'dlt645>=3,<4')")
        return
    print(
        f"theirs framing only   {result['theirs_decode_fps']:>12,.0f} frames/s"
        f"  ({result['theirs_package']})"
    )
    print(f"theirs encode         {result['theirs_encode_fps']:>12,.0f} frames/s")
    print(
        f"ratio decode ours/theirs  {result['decode_ratio']:.2f}x (target >= 3x; "
        f"quartiles {result['decode_ratio_quartiles']})"
    )
    print(f"ratio framing ours/theirs {result['framing_ratio']:.2f}x")
    print(f"ratio encode ours/theirs  {result['encode_ratio']:.2f}x")


if __name__ == "__main__":
    main()
