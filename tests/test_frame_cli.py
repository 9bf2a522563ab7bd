"""``amigate frame decode``: a captured frame to JSON, and exact errors for broken frames."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_amigate

# Reply of meter 000000000161 to a read of 00010000 (forward active energy total):
# 0.26 kWh. From https://hwhale.com/article/138066 (see tests/codecs/test_dlt645_vectors.py).
REPLY = "FE FE 68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16"


def test_decodes_a_captured_reply() -> None:
    result = run_amigate("frame", "decode", REPLY)
    assert result.returncode == 0, result.stderr
    frame = json.loads(result.stdout)
    assert frame["protocol"] == "dlt645-2007"
    assert frame["address"] == "000000000161"
    assert (frame["control"], frame["direction"], frame["abnormal"]) == (0x91, "response", False)
    assert frame["di"] == "00010000"
    assert frame["unit"] == "kWh"
    assert frame["values"][0]["value"] == "0.26"
    assert frame["values"][0]["channel"] == "1.8.0"
    assert frame["error"] is None


def test_hex_without_spaces_is_the_same_frame() -> None:
    spaced = json.loads(run_amigate("frame", "decode", REPLY).stdout)
    packed = json.loads(run_amigate("frame", "decode", REPLY.replace(" ", "")).stdout)
    assert spaced == packed


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (REPLY[:-5] + "8B 16", "checksum mismatch: computed 0x8A, frame has 0x8B"),
        (REPLY[:-2] + "17", "FrameFormatError"),
        ("68 61 01 00", "FrameFormatError"),
        ("zz 68", "not hexadecimal"),
    ],
)
def test_broken_frames_exit_2_with_the_cause(frame: str, message: str) -> None:
    result = run_amigate("frame", "decode", frame)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
