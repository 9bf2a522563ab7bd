"""Settings: defaults, environment, TOML file, validation messages, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from amigate.config import effective_settings, load_settings
from amigate.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AMIGATE_CONFIG", "AMIGATE_DATABASE_URL", "AMIGATE_API_PORT",
                 "AMIGATE_INTERVAL_MINUTES", "AMIGATE_SITE_TIMEZONE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_run_with_zero_setup() -> None:
    settings = load_settings()
    assert settings.database_url.get_secret_value() == "sqlite:///./amigate.db"
    assert settings.interval_minutes == 15
    assert settings.api_port == 8000


def test_toml_file_then_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "amigate.toml").write_text('api_port = 9100\ninterval_minutes = 30\n')
    assert load_settings().api_port == 9100
    monkeypatch.setenv("AMIGATE_API_PORT", "9200")
    settings = load_settings()
    assert (settings.api_port, settings.interval_minutes) == (9200, 30)


def test_config_path_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    other = tmp_path / "site.toml"
    other.write_text('site_timezone = "UTC"\n')
    assert load_settings(other).site_timezone == "UTC"
    monkeypatch.setenv("AMIGATE_CONFIG", str(other))
    assert load_settings().site_timezone == "UTC"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AMIGATE_INTERVAL_MINUTES", "7", "setting 'interval_minutes' = '7'"),
        ("AMIGATE_API_PORT", "70000", "setting 'api_port' = '70000'"),
        ("AMIGATE_SITE_TIMEZONE", "Mars/Olympus", "setting 'site_timezone' = 'Mars/Olympus'"),
        ("AMIGATE_DATABASE_URL", "mysql://u:hunter2@h/db", "setting 'database_url' = '***'"),
    ],
)
def test_invalid_setting_names_setting_and_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert expected in str(info.value)
    assert "hunter2" not in str(info.value)


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "amigate.toml").write_text("api_prot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'api_prot'"):
        load_settings()


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("api_port = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)


def test_show_masks_the_database_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMIGATE_DATABASE_URL", "postgresql://meter:s3cret@db:5432/amigate")
    shown = effective_settings(load_settings())
    assert shown["database_url"] == "postgresql://meter:***@db:5432/amigate"


def test_time_origin_keeps_a_scaled_clock_continuous_across_restarts() -> None:
    from datetime import UTC, datetime, timedelta

    from amigate.service import TimeBase

    origin = datetime.now(UTC) - timedelta(seconds=10)
    settings = load_settings(time_scale=30, time_origin=origin.isoformat())
    assert settings.time_origin == origin
    clock = TimeBase(settings.time_scale, origin=settings.time_origin)
    assert abs(clock.now() - (origin + timedelta(seconds=300))) < timedelta(seconds=30)
    with pytest.raises(ConfigError, match="time_origin"):
        load_settings(time_origin="2026-05-04T00:00:00")
