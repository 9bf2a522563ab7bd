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

    # (c) resident memory of amigate run, sampled from /proc
    memory = re.search(r"after the cycles ([\d.]+) MB, peak VmHWM ([\d.]+) MB", out)
    assert memory is not None, out
    rss, peak = float(memory.group(1)), float(memory.group(2))
    assert 20 < rss <= peak < 1000
