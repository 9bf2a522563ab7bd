"""The evaluation scenario end to end at reduced size: every injected fault found, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from amigate.errors import ConfigError
from amigate.resources import data_path
from amigate.simulators.vee_pipeline import load_scenario, score
from amigate.simulators.vee_scenario import FAULT_KINDS, VeeScenario
from amigate.storage import Store
from amigate.vee import validate

SCENARIO = data_path("simulators") / "vee-eval.toml"


def test_scenario_end_to_end_at_reduced_size(sqlite_store: Store) -> None:
    full = VeeScenario.load(SCENARIO)
    assert {f.kind for f in full.faults} == set(FAULT_KINDS)
    areas = {"clean-residential", "theft-1", "reversed-ct", "faults-1"}
    scenario = full.subset(areas).scaled(days=22, eval_days=14)
    assert {f.kind for f in scenario.faults} == set(FAULT_KINDS)
    loaded = load_scenario(sqlite_store, scenario)
    report = validate(sqlite_store, since=scenario.eval_start, until=scenario.end)
    assert report.versions > 0  # the outage and the exchange gaps were estimated
    scores = score(sqlite_store, loaded)
    assert scores.on_clean == []
    for kind, k in scores.kinds.items():
        assert (k.precision, k.recall) == (1.0, 1.0), kind
    expected = {kind for _target, kind in loaded.truth.expected}
    assert expected <= set(scores.kinds)
    assert scores.overall.tp == sum(len(w) for w in loaded.truth.expected.values())
    # validating again changes nothing
    before = score(sqlite_store, loaded)
    validate(sqlite_store, since=scenario.eval_start, until=scenario.end)
    assert score(sqlite_store, loaded) == before


def test_scenario_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nstart = "2026-03-02T00:00:00+08:00"\ndays = 10\neval_days = 3\n'
                   '[[areas]]\nname = "a"\ncustomers = 2\nthree_phase = 0\n'
                   '[[faults]]\nkind = "voltage_loss"\narea = "a"\nmeter = 0\nstart_day = 8\n')
    with pytest.raises(ConfigError, match="voltage_loss needs a three-phase meter"):
        VeeScenario.load(bad)
    bad.write_text('[scenario]\nstart = "2026-03-02T00:00:00+08:00"\n'
                   '[[areas]]\nname = "a"\n[[faults]]\nkind = "gremlins"\narea = "a"\n'
                   'meter = 0\nstart_day = 8\n')
    with pytest.raises(ConfigError, match="unknown fault kind 'gremlins'"):
        VeeScenario.load(bad)
    bad.write_text('[scenario]\nstart = "2026-03-02T00:00:00"\n')
    with pytest.raises(ConfigError, match="timezone"):
        VeeScenario.load(bad)
