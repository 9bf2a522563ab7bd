"""The README's examples stay true: its fleet file loads with the real loader."""

from __future__ import annotations

import re
from pathlib import Path

from amigate.fleet import load_fleet
from amigate.meter_models import load_models

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_fleet_example_loads(tmp_path: Path) -> None:
    text = README.read_text()
    match = re.search(r"\*\*The fleet file\*\*.*?```toml\n(.*?)```", text, re.S)
    assert match is not None, "the README lost its fleet file example"
    path = tmp_path / "fleet.toml"
    path.write_text(match.group(1))
    fleet = load_fleet(path, load_models())
    assert [bus.name for bus in fleet.buses] == ["feeder-1", "plant"]
