"""Meter model definitions: the shipped files load, broken files are reported precisely."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from amigate.errors import ConfigError
from amigate.meter_models import (
    DataId,
    MeterModel,
    PointKind,
    Poll,
    Register,
    load_model,
    load_models,
)
from amigate.resources import data_path

SHIPPED = ("dlt645-1997-single-phase", "dlt645-2007-single-phase", "dlt645-2007-three-phase")

MINIMAL = """
[model]
id = "{id}"
protocol = "dlt645-2007"
phases = 1
description = "test meter"

[model.rated]
voltage_v = 220
current_a = 5
max_current_a = 60

[[points]]
channel = "1.8.0"
kind = "energy"
unit = "kWh"
di = "00010000"
"""


def _write(folder: Path, text: str, name: str = "test-meter") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text.replace("{id}", name), encoding="utf-8")
    return path


def test_every_shipped_definition_loads() -> None:
    models = load_models()
    assert set(SHIPPED) <= set(models)
    for model_id in SHIPPED:
        model = models[model_id]
        assert model.id == model_id
        assert model.path.parent == data_path("drivers")
        assert model.point("1.8.0", PointKind.ENERGY).unit == "kWh"


def test_single_phase_2007_details() -> None:
    model = load_models()["dlt645-2007-single-phase"]
    assert model.protocol == "dlt645-2007"
    assert model.dlt645_version == "2007"
    assert (model.phases, model.tariffs) == (1, 4)
    assert model.rated.max_current_a == Decimal(60)
    assert model.serial.baud == 2400 and model.serial.parity == "E"
    total = model.point("1.8.0", PointKind.ENERGY)
    assert total.source == DataId(di=0x00010000)
    assert total.poll == Poll.CYCLE
    tariffs = [p for p in model.by_kind(PointKind.ENERGY) if p.tariff]
    assert [p.channel for p in tariffs] == ["1.8.1", "1.8.2", "1.8.3", "1.8.4"]
    freeze = model.point("1.8.0", PointKind.DAILY_FREEZE)
    assert isinstance(freeze.source, DataId)
    assert freeze.source.indexed and freeze.source.depth == 62
    assert freeze.source.hex == "050601NN"
    assert freeze.source.at(1) == 0x05060101
    assert freeze.source.at(62) == 0x0506013E
    assert freeze.poll == Poll.BACKFILL
    with pytest.raises(ValueError, match=r"outside 1\.\.62"):
        freeze.source.at(63)


def test_three_phase_has_every_phase_quantity() -> None:
    model = load_models()["dlt645-2007-three-phase"]
    assert model.phases == 3
    for channel, phase in (("32.7.0", "A"), ("52.7.0", "B"), ("72.7.0", "C")):
        assert model.point(channel).phase == phase
        assert model.point(channel).unit == "V"
    assert model.point("61.7.0").source == DataId(di=0x02030300)


def test_1997_model_uses_two_byte_identifiers() -> None:
    model = load_models()["dlt645-1997-single-phase"]
    assert model.dlt645_version == "1997"
    assert model.serial.baud == 1200
    assert model.point("1.8.0").source == DataId(di=0x9010, width=2)
    assert model.point("C.1.0").kind == PointKind.IDENTITY


def test_extra_folder_adds_and_overrides_models(tmp_path: Path) -> None:
    _write(tmp_path, MINIMAL, "my-meter")
    _write(tmp_path, MINIMAL.replace("test meter", "local override"), "dlt645-2007-single-phase")
    models = load_models([tmp_path])
    assert isinstance(models["my-meter"], MeterModel)
    assert models["dlt645-2007-single-phase"].description == "local override"
    assert models["dlt645-2007-single-phase"].path.parent == tmp_path


def test_missing_extra_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nowhere does not exist"):
        load_models([tmp_path / "nowhere"])


def test_modbus_points_fit_the_same_format(tmp_path: Path) -> None:
    text = MINIMAL.replace('"dlt645-2007"', '"modbus"').replace(
        'di = "00010000"',
        'register = 0x4000\nfunction = 4\ndtype = "float32"\nword_order = "little"\nscale = 0.001',
    )
    model = load_model(_write(tmp_path, text))
    assert model.point("1.8.0").source == Register(
        function=4, address=0x4000, dtype="float32", word_order="little", scale=Decimal("0.001")
    )
    assert model.serial.baud == 9600 and model.serial.parity == "N"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('di = "00010000"', 'di = "0001000"', "point #1 (1.8.0): di = '0001000' must be 8 hex"),
        ('di = "00010000"', 'di = "0001000G"', "point #1 (1.8.0): di = '0001000G' must be 8 hex"),
        ('unit = "kWh"', 'unit = "kwh"', "point #1 (1.8.0): unit = 'kwh' is not one of"),
        ('unit = "kWh"', 'unit = "V"', "unit = 'V' but DI 00010000 (forward active energy "),
        ('di = "00010000"', 'di = "00FF0000"', "di 00FF0000 is not in the dlt645-2007 catalogue"),
        ('di = "00010000"', 'di = "050601NN"\ndepth = 99', "di 05060163 is not in the"),
        ('kind = "energy"', 'kind = "energie"', "point #1 (1.8.0): kind = 'energie' is not one"),
        ('channel = "1.8.0"', 'channel = "total"', "point #1 (total): channel = 'total' is not"),
        ('unit = "kWh"', 'unit = "kWh"\nscael = 2', "point #1 (1.8.0): unknown key(s) scael"),
        ('di = "00010000"', "register = 3", "point #1 (1.8.0): register is a Modbus key"),
        ('di = "00010000"', 'di = "050601NN"', "point #1 (1.8.0): di = '050601NN' is indexed"),
        ('di = "00010000"', 'di = "00010000"\ndepth = 3', "depth is only meaningful"),
        ('unit = "kWh"', 'unit = "kWh"\ntariff = 2', "point #1 (1.8.0): tariff 2 exceeds"),
        ('unit = "kWh"', 'unit = "kWh"\nphase = "D"', "phase = 'D' must be A, B or C"),
        ('unit = "kWh"', 'unit = "kWh"\npoll = "hourly"', "poll = 'hourly' is not one of"),
        ('kind = "energy"', 'kind = "load_profile"', "load_profile_days is 0"),
        ("phases = 1", "phases = 2", "[model]: phases = 2 must be 1 or 3"),
        ("phases = 1", 'phases = "one"', "[model]: phases = 'one' must be of type int"),
        ('protocol = "dlt645-2007"', 'protocol = "iec62056"', "protocol = 'iec62056' is not"),
        ('description = "test meter"\n', "", "[model]: missing required key 'description'"),
        ("max_current_a = 60", "max_current_a = 1", "max_current_a must not be below"),
        ("voltage_v = 220", "voltage_v = -220", "voltage_v = -220 must be a positive"),
        ("[model.rated]", "[model.ratings]", "[model]: unknown key(s) ratings"),
        ('id = "test-meter"', 'id = "other"', "id = 'other' does not match the file name"),
        ("[[points]]", "[[point]]", "unknown key(s) point"),
    ],
)
def test_broken_definitions_name_file_point_and_problem(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    text = MINIMAL.replace("{id}", "test-meter")
    assert old in text
    path = _write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_model(path)
    message = str(info.value)
    assert str(path) in message
    assert problem in message


def test_duplicate_channel_names_both_points(tmp_path: Path) -> None:
    text = MINIMAL + MINIMAL[MINIMAL.index("[[points]]") :]
    with pytest.raises(
        ConfigError,
        match=r"point #2 \(1.8.0\): channel 1.8.0 \(energy\) is "
        r"already defined by point #1",
    ):
        load_model(_write(tmp_path, text))


def test_no_points_and_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"test-meter.toml: no \[\[points\]\] defined"):
        load_model(_write(tmp_path, "points = []\n" + MINIMAL[: MINIMAL.index("[[points]]")]))
    bad = _write(tmp_path, "[model\nid=", "broken")
    with pytest.raises(ConfigError, match=r"broken.toml: not valid TOML"):
        load_model(bad)
    with pytest.raises(ConfigError, match="missing the \\[model\\] table"):
        load_model(_write(tmp_path, "points = []\n", "empty"))
