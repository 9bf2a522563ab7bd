"""The saved meter list: a start without database reads the meters of the last start."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from amigate.config import load_settings
from amigate.domain import Meter, MeterRole, MeterStatus, Protocol
from amigate.errors import ConfigError, StorageUnavailable
from amigate.fleet import parse_fleet
from amigate.meter_cache import load_meters, save_meters
from amigate.meter_models import MeterModel
from amigate.service import Service
from amigate.storage import Store, make_engine
from tests.helpers import free_port, serving

FLEET = {
    "bus": [{
        "name": "feeder", "protocol": "dlt645-2007", "url": "tcp://127.0.0.1:9",
        "meters": [
            {"address": "000000000001", "model": "dlt645-2007-single-phase", "ct_ratio": 40},
            {"address": "000000000002", "model": "dlt645-2007-three-phase",
             "transformer_area": "TA-7", "role": "area-total"},
        ],
    }],
}  # fmt: skip


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    meters = [
        Meter(address="000000000001", protocol=Protocol.DLT645_2007, model="m", bus="b", id=7,
              ct_ratio=Decimal("40"), pt_ratio=Decimal("1.5"), rated_voltage=None,
              transformer_area="TA", role=MeterRole.AREA_TOTAL, status=MeterStatus.UNAVAILABLE),
        Meter(address="3", protocol=Protocol.MODBUS, model="sdm630", bus="m", id=8),
    ]  # fmt: skip
    path = tmp_path / "spool" / "meters.json"
    save_meters(path, meters)
    assert load_meters(path) == meters
    assert load_meters(tmp_path / "absent.json") is None


def test_a_damaged_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "meters.json"
    path.write_text('{"meters": [{"address": 1}]}')
    with pytest.raises(ConfigError, match=r"meters\.json"):
        load_meters(path)


def _service(store: Store, spool: Path, models: dict[str, MeterModel]) -> Service:
    settings = load_settings(None, spool_dir=spool)
    fleet = parse_fleet(FLEET, models)
    return Service(settings, store, fleet=fleet, models=models, host="127.0.0.1", port=0)


def test_without_database_the_meters_of_the_last_start_are_read(
    tmp_path: Path, sqlite_store: Store, models: dict[str, MeterModel]
) -> None:
    first = _service(sqlite_store, tmp_path, models)
    first.register_meters()
    registered = [m for bus in first.buses for m in bus.meters]
    assert [m.id for m in registered] == [1, 2]
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/amigate"
    away = make_engine(url, check=False)
    try:
        second = _service(Store(away), tmp_path, models)
        second.register_meters()
        assert [m for bus in second.buses for m in bus.meters] == registered
        # No saved list: nothing to read until the database answers.
        with pytest.raises(StorageUnavailable):
            _service(Store(away), tmp_path / "other", models).register_meters()
    finally:
        away.dispose()


def test_run_starts_while_the_database_is_away_and_says_so(tmp_path: Path) -> None:
    """``amigate run`` with a fleet and an unreachable database serves, reports 503, waits."""
    meters = "\n".join(
        f'[[bus.meters]]\naddress = "00000000000{i}"\nmodel = "dlt645-2007-single-phase"'
        for i in (1, 2)
    )
    (tmp_path / "fleet.toml").write_text(
        f'[[bus]]\nname = "feeder"\nprotocol = "dlt645-2007"\nurl = "tcp://127.0.0.1:9"\n{meters}\n'
    )
    port = free_port()
    env = {"AMIGATE_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x",
           "AMIGATE_SPOOL_DIR": str(tmp_path / "spool")}  # fmt: skip
    with serving("run", "--fleet", "fleet.toml", "--port", str(port), port=port, cwd=tmp_path,
                 env=env) as client:  # fmt: skip
        health = client.get("/healthz")
        ready = client.get("/readyz")
    assert health.status_code == 503 and "unavailable" in health.json()["error"]
    assert ready.status_code == 503
