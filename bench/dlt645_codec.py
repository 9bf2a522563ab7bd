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

    python bench/dlt645_codec.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import importlib
import json
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
    "energy total 00010000": _hex(
        "68 01 00 00 00 00 00 68 91 08 33 33 34 33 59 B3 55 44 DC 16"
    ),
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


def _best_rates(steps: dict[str, Callable[[], int]], seconds: float) -> dict[str, float]:
    """Interleave short slices of every step for ``seconds``; best frames/s of each.

    Interleaving and taking the best slice keeps the ratio meaningful on a shared,
    noisy machine: both sides see the same background load.

    Args:
        steps: name -> callable returning how many frames it handled.
        seconds: total time budget.

    Returns:
        name -> best observed frames/s.
    """
    for step in steps.values():
        step()  # warm-up: catalogue layouts, imports
    best = dict.fromkeys(steps, 0.0)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for name, step in steps.items():
            start = time.perf_counter()
            done = step()
            best[name] = max(best[name], done / (time.perf_counter() - start))
    return best


def _ours_decode(frames: list[bytes], rounds: int) -> Callable[[], int]:
    buffer = Dlt645Buffer()
    version = Dlt645Version.V2007

    def step() -> int:
        for _ in range(rounds):
            for raw in frames:
                buffer.feed(raw)
                frame = buffer.next_frame()
                assert frame is not None
                decode_read_response(frame, version=version)
        return rounds * len(frames)

    return step


def _ours_framing(frames: list[bytes], rounds: int) -> Callable[[], int]:
    buffer = Dlt645Buffer()

    def step() -> int:
        for _ in range(rounds):
            for raw in frames:
                buffer.feed(raw)
                buffer.next_frame()
        return rounds * len(frames)

    return step


def _ours_encode(rounds: int) -> Callable[[], int]:
    def step() -> int:
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


def _theirs_decode(frames: list[bytes], rounds: int) -> Callable[[], int] | None:
    DLT645Protocol = _baseline()
    if DLT645Protocol is None:
        return None

    def step() -> int:
        for _ in range(rounds):
            for raw in frames:
                DLT645Protocol.deserialize(raw)
        return rounds * len(frames)

    return step


def _theirs_encode(rounds: int) -> Callable[[], int] | None:
    DLT645Protocol = _baseline()
    if DLT645Protocol is None:
        return None
    requests = [(bytes.fromhex(a)[::-1], di.to_bytes(4, "little")) for a, di in REQUESTS]

    def step() -> int:
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
        frames/s for our decode with value extraction, our framing alone and our
        encode; the ``dlt645`` package's framing and encode when it is installed
        (else ``None``); and the ratios ours/theirs.
    """
    frames = list(FRAMES.values())
    _check_same_work(frames)
    steps = {
        "ours_decode_fps": _ours_decode(frames, 100),
        "ours_framing_fps": _ours_framing(frames, 100),
        "ours_encode_fps": _ours_encode(150),
    }
    theirs_decode = _theirs_decode(frames, 100)
    theirs_encode = _theirs_encode(150)
    if theirs_decode is not None and theirs_encode is not None:
        steps["theirs_decode_fps"] = theirs_decode
        steps["theirs_encode_fps"] = theirs_encode
    result: dict[str, Any] = {
        "frames": list(FRAMES),
        "theirs_decode_fps": None,
        "theirs_encode_fps": None,
        "decode_ratio": None,
        "framing_ratio": None,
        "encode_ratio": None,
        **_best_rates(steps, seconds),
    }
    if theirs_decode is not None:
        from importlib.metadata import version

        result["theirs_package"] = f"dlt645 {version('dlt645')}"
        result["decode_ratio"] = result["ours_decode_fps"] / result["theirs_decode_fps"]
        result["framing_ratio"] = result["ours_framing_fps"] / result["theirs_decode_fps"]
        result["encode_ratio"] = result["ours_encode_fps"] / result["theirs_encode_fps"]
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
    print(f"ours   decode+values  {result['ours_decode_fps']:>12,.0f} frames/s")
    print(f"ours   framing only   {result['ours_framing_fps']:>12,.0f} frames/s")
    print(f"ours   encode         {result['ours_encode_fps']:>12,.0f} frames/s")
    if result["theirs_decode_fps"] is None:
        print("baseline: the dlt645 package is not installed (pip install 'dlt645>=3,<4')")
        return
    print(f"theirs framing only   {result['theirs_decode_fps']:>12,.0f} frames/s"
          f"  ({result['theirs_package']})")
    print(f"theirs encode         {result['theirs_encode_fps']:>12,.0f} frames/s")
    print(f"ratio decode ours/theirs {result['decode_ratio']:.1f}x (target >= 3x)")
    print(f"ratio framing ours/theirs {result['framing_ratio']:.1f}x")
    print(f"ratio encode ours/theirs {result['encode_ratio']:.1f}x")


if __name__ == "__main__":
    main()
