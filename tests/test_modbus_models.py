"""Modbus meter model definitions: shipped files, validation errors, block planning."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

import pytest

from amigate.drivers.modbus_plan import decode_block, normalize, plan_blocks
from amigate.errors import ConfigError
from amigate.meter_models import ModbusSpec, PointKind, Register, load_model, load_models

MODBUS_MODELS = (
    "abb-b23", "adl400", "ddsu666", "dtsu666", "em24", "em340", "iem3155", "sdm120", "sdm630",
)  # fmt: skip

BASE = """
[model]
id = "{id}"
protocol = "modbus"
phases = 1
description = "test meter"

[model.rated]
voltage_v = 230
current_a = 5
max_current_a = 60

[model.modbus]
max_block = 10
manual_numbering = "modicon"

[[points]]
channel = "32.7.0"
kind = "instantaneous"
unit = "V"
function = 4
register = 0
manual = 30001
dtype = "float32"

[[points]]
channel = "1.8.0"
kind = "energy"
unit = "kWh"
function = 4
register = 0x48
manual = "30073"
dtype = "float32"
"""


def _write(folder: Path, text: str, name: str = "mb-meter") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text.replace("{id}", name), encoding="utf-8")
    return path


def test_every_required_model_ships_and_dlt645_models_share_the_folder() -> None:
    models = load_models()
    modbus = {k for k, m in models.items() if m.protocol == "modbus"}
    assert modbus == set(MODBUS_MODELS)
    assert {"dlt645-2007-single-phase", "dlt645-2007-three-phase"} <= set(models)
    assert len({m.path.parent for m in models.values()}) == 1


@pytest.mark.parametrize("model_id", MODBUS_MODELS)
def test_model_points_are_complete(model_id: str) -> None:
    model = load_models()[model_id]
    assert model.modbus is not None
    channels = {p.channel for p in model.points}
    voltages = {"32.7.0", "52.7.0", "72.7.0"} if model.phases == 3 else {"32.7.0"}
    assert voltages <= channels
    assert "1.7.0" in channels
    assert channels & {"1.8.0", "15.8.0"}
    for point in model.points:
        reg = point.source
        assert isinstance(reg, Register)
        assert reg.manual is not None, point.channel  # the manual's number beside the address
        assert reg.count <= model.modbus.max_block
        if point.kind is PointKind.ENERGY:
            assert point.unit in ("kWh", "Wh")


def test_word_orders_and_numbering_follow_the_manuals() -> None:
    models = load_models()
    sdm = models["sdm630"].point("1.8.0").source
    assert isinstance(sdm, Register)
    assert (sdm.function, sdm.address, sdm.manual, sdm.word_order) == (4, 0x48, "30073", "big")
    # Schneider prints 1-based numbers: 3028 in the manual is wire address 3027.
    iem = models["iem3155"].point("32.7.0").source
    assert isinstance(iem, Register)
    assert (iem.address, iem.manual) == (3027, "3028")
    energy = models["iem3155"].point("1.8.0").source
    assert isinstance(energy, Register) and energy.dtype == "int64"
    em24 = models["em24"].point("32.7.0").source
    assert isinstance(em24, Register) and em24.word_order == "little"
    abb = models["abb-b23"].point("1.8.0").source
    assert isinstance(abb, Register)
    assert abb.sentinels == ((1 << 64) - 1,)  # all-FF means "not available"


def test_unconfirmed_points_are_marked() -> None:
    models = load_models()
    unconfirmed = {m: {p.channel for p in models[m].points if p.unconfirmed} for m in MODBUS_MODELS}
    assert {"32.7.0", "1.8.0", "2.8.0", "13.7.0", "14.7.0"} <= unconfirmed["adl400"]
    assert {"31.7.0", "1.7.0", "15.8.0"}.isdisjoint(unconfirmed["adl400"])
    assert {"13.7.0", "33.7.0"} <= unconfirmed["iem3155"]
    assert "1.8.0" in unconfirmed["dtsu666"]
    assert unconfirmed["sdm630"] == set() and unconfirmed["em24"] == set()


def test_a_minimal_definition_loads(tmp_path: Path) -> None:
    model = load_model(_write(tmp_path, BASE))
    assert model.modbus == ModbusSpec(max_block=10, manual_numbering="modicon")
    assert model.serial.baud == 9600


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("manual = 30001", "manual = 40001",
         "point #1 (32.7.0): manual = '40001' does not match register = 0 (0x0000): with "
         "modicon numbering the manual number is 30001"),
        ("manual = 30001", 'manual = "30O01"', "point #1 (32.7.0): manual = '30O01' is not a"),
        ('register = 0x48\nmanual = "30073"', 'register = 1\nmanual = "30002"',
         "point #2 (1.8.0): register 1 overlaps point #1 (32.7.0) at 0..1"),
        ("max_block = 10", "max_block = 200", "[modbus]: max_block = 200 must be within"),
        ("max_block = 10", "max_block = 10\nmax_gap = 10", "max_gap = 10 must be within"),
        ('dtype = "float32"', 'dtype = "float"', "point #1 (32.7.0): dtype = 'float' is not one"),
        ("function = 4", "function = 6", "point #1 (32.7.0): function = 6 must be 3"),
        ("register = 0\n", "register = 65535\n", "passes 65535"),
        ('manual_numbering = "modicon"', 'manual_numbering = "modicon"\nsilly = 1',
         "[model] [modbus]: unknown key(s) silly"),
        ("max_block = 10", "max_block = 1", "float32 needs 2 registers, more than max_block"),
        ('dtype = "float32"', 'dtype = "float32"\nnot_available = ["x"]', "list of raw integers"),
        ('dtype = "float32"', 'dtype = "float32"\nunconfirmed = "yes"', "unconfirmed = 'yes'"),
    ],
)  # fmt: skip
def test_broken_modbus_definitions_name_file_point_and_problem(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    assert old in BASE
    path = _write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_model(path)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_dlt645_models_refuse_a_modbus_table(tmp_path: Path) -> None:
    text = (load_models()["dlt645-2007-single-phase"].path.read_text()).replace(
        "[model.serial]", "[model.modbus]\nmax_block = 10\n\n[model.serial]"
    )
    with pytest.raises(ConfigError, match="only Modbus models have a"):
        load_model(_write(tmp_path, text, "dlt645-2007-single-phase"))


def test_sdm630_plan_coalesces_24_points_into_3_requests() -> None:
    model = load_models()["sdm630"]
    assert model.modbus is not None
    blocks = plan_blocks(model.points, model.modbus)
    assert [(b.function, b.address, b.count) for b in blocks] == [
        (4, 0x0000, 0x24), (4, 0x0034, 0x18), (4, 0x0156, 0x10),
    ]  # fmt: skip
    assert sum(len(b.points) for b in blocks) == len(model.points) == 24
    single = plan_blocks(model.points, model.modbus, single=True)
    assert len(single) == 24 and all(len(b.points) == 1 for b in single)


@pytest.mark.parametrize("model_id", MODBUS_MODELS)
def test_plans_respect_block_size_and_gaps(model_id: str) -> None:
    model = load_models()[model_id]
    spec = model.modbus
    assert spec is not None
    blocks = plan_blocks(model.points, spec)
    assert len(blocks) < len(model.points)
    for block in blocks:
        assert block.count <= spec.max_block
        regs = [p.source for p in block.points]
        assert all(isinstance(r, Register) and r.function == block.function for r in regs)
        ends = [(r.address, r.end) for r in regs if isinstance(r, Register)]
        for (_, end), (start, _) in itertools.pairwise(ends):
            assert start - end <= spec.max_gap


def test_max_block_splits(tmp_path: Path) -> None:
    model = load_models()["abb-b23"]
    assert model.modbus is not None
    tight = ModbusSpec(max_block=8, max_gap=0)
    blocks = plan_blocks(model.points, tight)
    assert all(b.count <= 8 for b in blocks)
    assert len(blocks) > len(plan_blocks(model.points, model.modbus))


def test_decode_block_normalizes_units_and_sentinels() -> None:
    model = load_models()["iem3155"]
    assert model.modbus is not None
    (block,) = plan_blocks([model.point("1.8.0"), model.point("2.8.0")], model.modbus)
    assert (block.address, block.count) == (0x0C83, 8)
    registers = [0, 0, 0x0001, 0xE240, 0, 0, 0, 5]  # 123456 Wh, 5 Wh
    values = decode_block(block, registers)
    assert [(v.channel, v.value, v.unit) for v in values] == [
        ("1.8.0", Decimal("123.456"), "kWh"), ("2.8.0", Decimal("0.005"), "kWh"),
    ]  # fmt: skip
    abb = load_models()["abb-b23"]
    assert abb.modbus is not None
    (block,) = plan_blocks([abb.point("1.8.0")], abb.modbus)
    (value,) = decode_block(block, [0xFFFF] * 4)
    assert value.value is None and value.missing == "not_available"
    assert normalize(Decimal("1234.5"), "W") == (Decimal("1.2345"), "kW")
    assert normalize(Decimal("0.0000001"), "kWh") == (Decimal("0.000000"), "kWh")
