"""bench/collect.py runs end to end in its quick mode and prints its three measurements."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_prints_the_three_measurements() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "collect.py"), "--quick"], cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "!!" not in out, out  # no failed reads, every cycle completed

    # (a) both paths measured, and their ratio
    rows = re.findall(r"^\s+1\s+(bare sequential client|BusWorker x 2, 1 cycles)\s+([\d,]+)\s+"
                      r"([\d,]+)", out, re.M)  # fmt: skip
    assert [r[0] for r in rows] == ["bare sequential client", "BusWorker x 2, 1 cycles"], out
    assert all(int(r[1].replace(",", "")) > 0 and int(r[2].replace(",", "")) > 0 for r in rows)
    ratio = re.search(r"end to end / bare client \(requests/s\).*best / best: ([\d.]+)", out)
    assert ratio is not None and float(ratio.group(1)) > 0, out

    # (b) achieved against the theoretical maximum of the frames at 2400 baud
    achieved = re.search(r"achieved: [\d.]+ meter reads/s, ([\d.]+) requests/s; "
                         r"theoretical maximum ([\d.]+) requests/s", out)  # fmt: skip
    efficiency = re.search(r"efficiency: ([\d.]+)%", out)
    assert achieved is not None and efficiency is not None, out
    rate, ceiling = float(achieved.group(1)), float(achieved.group(2))
    # About 40 bytes a request at 11 bits and 2400 baud, plus 20 ms: under 5 requests/s.
    assert 3.5 < ceiling < 5.5
    assert 0 < rate <= ceiling * 1.05
    assert abs(float(efficiency.group(1)) - 100 * rate / ceiling) < 1.0

    # (c) resident memory of amigate run, sampled from /proc over the run
    memory = re.search(r"at the end ([\d.]+) MB, peak VmHWM ([\d.]+) MB", out)
    assert memory is not None, out
    rss, peak = float(memory.group(1)), float(memory.group(2))
    assert 20 < rss <= peak < 1000
    over = re.search(r"VmRSS over the run: (.*)$", out, re.M)
    assert over is not None, out
    points = re.findall(r"([\d.]+) s ([\d.]+) MB", over.group(1))
    assert len(points) == 6 and all(20 < float(mb) <= peak for _, mb in points), out
    assert [float(t) for t, _ in points] == sorted(float(t) for t, _ in points), out
    half = re.search(r"second half \(([\d.]+)-([\d.]+) s, (\d+) samples\): VmRSS "
                     r"([\d.]+)-([\d.]+) MB, slope ([+-][\d.]+) MB/hour, of each minute's "
                     r"lowest sample ([+-][\d.]+) MB/hour", out)  # fmt: skip
    assert half is not None, out
    assert float(half.group(2)) >= 6 and int(half.group(3)) >= 2, out
    assert 20 < float(half.group(4)) <= float(half.group(5)) <= peak, out


def test_memory_slope_is_the_least_squares_trend_in_mb_per_hour() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from collect_sim import floor_by_minute, slope_mb_per_hour
    finally:
        sys.path.remove(str(ROOT / "bench"))
    assert slope_mb_per_hour([(0.0, 100.0), (1800.0, 101.0), (3600.0, 102.0)]) == 2.0
    flat_sawtooth = [(10.0 * k, 140.0 + (k % 2)) for k in range(360)]
    assert abs(slope_mb_per_hour(flat_sawtooth)) < 0.05
    assert slope_mb_per_hour([(5.0, 120.0)]) == 0.0
    # A transient peak late in a flat run tilts the fit; each minute's floor does not.
    spiked = [(10.0 * k, 150.0 if 300 <= k < 304 else 140.0) for k in range(360)]
    assert slope_mb_per_hour(spiked) > 0.3
    assert slope_mb_per_hour(floor_by_minute(spiked)) == 0.0
    assert floor_by_minute([(0.0, 3.0), (30.0, 1.0), (70.0, 2.0)]) == [(30.0, 1.0), (70.0, 2.0)]
