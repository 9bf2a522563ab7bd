"""Settings: environment variables (``AMIGATE_*``) over an optional TOML file over defaults.

The file is ``./amigate.toml`` when present, or the path in ``AMIGATE_CONFIG`` or
``--config``. Settings are read once, at the composition root (the CLI or
``create_app``), and handed down as plain values: codecs, transports and drivers
never import this module.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from amigate.errors import ConfigError
from amigate.tou import TouSchedule

DEFAULT_CONFIG_FILE = Path("amigate.toml")
DEFAULT_DATABASE_URL = "sqlite:///./amigate.db"


class VeeSettings(BaseModel):
    """Thresholds of the validation rules and estimation (sources: docs/vee.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interpolation_limit_minutes: int = Field(default=120, ge=0, le=1440)
    like_days: int = Field(default=4, ge=1, le=12)
    history_days: int = Field(default=28, ge=7, le=400)
    history_min_days: int = Field(default=7, ge=1, le=100)
    spike_ratio: float = Field(default=3.0, gt=0)
    spike_history_factor: float = Field(default=2.0, gt=0)
    spike_min_kwh: float = Field(default=0.05, ge=0)
    high_usage_ratio: float = Field(default=3.0, gt=1)
    low_usage_ratio: float = Field(default=0.4, gt=0, lt=1)
    zero_hours: float = Field(default=24.0, gt=0)
    running_away_multiple: float = Field(default=1.2, gt=0)
    stopped_kwh: float = Field(default=0.1, gt=0)
    tariff_tolerance_kwh: float = Field(default=0.05, ge=0)
    reverse_min_kwh: float = Field(default=0.0, ge=0)
    sum_tolerance_ratio: float = Field(default=0.005, ge=0)
    sum_tolerance_kwh: float = Field(default=0.01, ge=0)
    clock_tolerance_s: float = Field(default=60.0, gt=0)
    voltage_loss_ratio: float = Field(default=0.78, gt=0, lt=1)
    phase_break_ratio: float = Field(default=0.60, gt=0, lt=1)
    current_loss_voltage_ratio: float = Field(default=0.70, gt=0, lt=1)
    no_current_ratio: float = Field(default=0.005, gt=0, lt=1)
    load_current_ratio: float = Field(default=0.05, gt=0, lt=1)
    voltage_imbalance: float = Field(default=0.30, gt=0, le=1)
    current_imbalance: float = Field(default=0.30, gt=0, le=1)
    reverse_power_ratio: float = Field(default=0.005, gt=0, lt=1)
    phase_min_samples: int = Field(default=1, ge=1)
    demand_contract_factor: float = Field(default=1.0, gt=0)
    line_loss_high: float = Field(default=0.10, gt=0, lt=1)
    line_loss_negative: float = Field(default=0.0, le=0)
    theft_high_days: int = Field(default=3, ge=1)
    theft_drop_ratio: float = Field(default=0.3, gt=0, lt=1)
    join_gap_hours: float = Field(default=24.0, ge=0)


#: The documented validation defaults, for callers given no settings.
DEFAULT_VEE_SETTINGS = VeeSettings()


class Settings(BaseSettings):
    """The effective configuration of one amigate process."""

    model_config = SettingsConfigDict(
        env_prefix="AMIGATE_",
        env_nested_delimiter="__",
        env_ignore_empty=True,
        extra="forbid",
        validate_default=True,
    )

    database_url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        description="sqlite:///PATH (embedded default) or postgresql://USER:PASS@HOST:PORT/DB",
    )
    api_host: str = Field(default="127.0.0.1", description="address the HTTP API listens on")
    api_port: int = Field(default=8000, ge=1, le=65535, description="port of the HTTP API")
    interval_minutes: int = Field(
        default=15, description="interval length in minutes; must divide 60 or 1440 evenly"
    )
    site_timezone: str = Field(
        default="Asia/Shanghai", description="IANA timezone of the site, for local-time inputs"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    drivers_dirs: list[Path] = Field(
        default_factory=list, description="extra folders with meter model definitions"
    )
    fleet_file: Path | None = Field(
        default=None, description="fleet file (TOML) whose buses `amigate run` reads (none: API)"
    )
    time_scale: float = Field(
        default=1.0,
        description="the collection clock runs this many times faster than real time "
        "(demos and tests against simulators only; stored times are then simulated)",
    )
    spool_dir: Path | None = Field(
        default=None,
        description="folder of the local spool that keeps collected rows while the database "
        "is away (default: amigate-spool next to a SQLite database, else ./amigate-spool)",
    )
    spool_max_rows: int = Field(
        default=1_000_000,
        description="rows the spool of one bus may hold; when full the oldest backfill-able "
        "reads are dropped first, then the oldest others, with an ERROR",
    )
    time_origin: datetime | None = Field(
        default=None,
        description="with time_scale, the scaled clock reads origin + scale x (now - origin); "
        "a fixed origin keeps it continuous across restarts (default: when the process starts)",
    )
    vee: VeeSettings = Field(
        default_factory=VeeSettings, description="validation thresholds (see docs/vee.md)"
    )
    sqlite_cache_mb: int = Field(
        default=8, ge=1, le=4096,
        description="SQLite page cache per connection of `amigate run` (bulk loads use more)",
    )
    sqlite_heap_mb: int = Field(
        default=8, ge=0, le=65536,
        description="SQLite memory of `amigate run` in all: once its connections (store and "
        "spools) hold this much, their page caches reuse pages instead of growing (0: no limit)",
    )
    vee_every_minutes: int = Field(
        default=15, ge=0,
        description="`amigate run` validates the last vee_window_hours this often (0: never)",
    )
    vee_window_hours: int = Field(
        default=24, ge=1, le=24 * 31,
        description="how far back each validation run of `amigate run` looks",
    )
    day_totals_every_minutes: int = Field(
        default=15, ge=0,
        description="`amigate run` adds up closed days per tariff period this often, for fast "
        "billing determinants (0: never; determinants are then summed from the intervals)",
    )
    day_totals_days: int = Field(
        default=62, ge=1, le=3660,
        description="how many closed days back the day totals are kept built",
    )
    feed_retention_days: int = Field(
        default=35, ge=0,
        description="change-feed entries are kept this many days (0: forever); a client whose "
        "cursor is older gets 410 cursor-expired",
    )
    timescale_chunk_interval: str = Field(
        default="1 day",
        description="chunk_time_interval of new hypertables (see README: chunk sizing)",
    )

    clock_check_hours: float = Field(
        default=24.0,
        description="hours between two clock checks (date + time read) of a DL/T 645 meter",
    )
    clock_offset_threshold_s: float = Field(
        default=60.0,
        description="a meter clock off by more than this many seconds is flagged "
        "(anomaly clock_offset) and corrected by broadcast time sync when within the limit",
    )
    # Meters accept a broadcast time set (08H) only for small corrections, at most once
    # a day: /work/shared/references/dlt645.md §4.2 (08H broadcast time set, no reply)
    # and §9 step 7 ("most meters only accept ± small corrections per day", a meter-side
    # rule marked [U]); ±5 min once a day is the common field value.
    clock_sync_limit_s: float = Field(
        default=300.0,
        description="largest offset (seconds) a broadcast time sync is used for; meters off "
        "by more are only reported (0: never send a time sync)",
    )

    api_max_range_days: int = Field(
        default=93, ge=1, le=3660,
        description="longest time range (days) one API request may ask for",
    )
    api_rate_limit: float = Field(
        default=50.0, gt=0, description="requests per second each API key may make (sustained)"
    )
    api_rate_burst: int = Field(
        default=100, ge=1, description="requests an API key may make at once above the rate"
    )
    api_processes: int = Field(
        default=1, ge=1, le=64,
        description="processes serving the API on its port: 1 is the service's own; more "
        "are API processes beside it, which accept its connections (the service then only "
        "opens the port), so billing "
        "reads use more CPUs and take none from the buses",
    )
    api_connections: int = Field(
        default=8, ge=1, le=100,
        description="database connections the API keeps open, apart from collection's; each "
        "is readied with the billing reads before the API takes requests",
    )
    api_sqlite_mmap_mb: int = Field(
        default=1024, ge=0, le=65536,
        description="API processes (api_processes above 1) read this much of a SQLite "
        "database through a memory map instead of copying pages into their caches "
        "(0: never); the service serving the API itself never maps it",
    )
    api_heap_reserve_mb: int = Field(
        default=32, ge=0, le=64,
        description="API processes (api_processes above 1) keep up to this much freed "
        "memory for their next responses instead of handing it back to the system at once: "
        "fresh pages cost a meter-month series 1.1-1.5 ms of CPU (0: the C library's "
        "defaults; glibc only)",
    )
    api_max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="largest request body the API accepts (bytes)"
    )
    metrics_public: bool = Field(
        default=True, description="serve /metrics without an API key (else an admin key)"
    )
    tou: TouSchedule = Field(
        default_factory=TouSchedule, description="time-of-use schedule of billing determinants"
    )

    @field_validator("clock_check_hours")
    @classmethod
    def _check_clock_check_hours(cls, value: float) -> float:
        if not 0.25 <= value <= 168:
            raise ValueError("must be within 0.25..168 hours")
        return value

    @field_validator("clock_offset_threshold_s")
    @classmethod
    def _check_clock_threshold(cls, value: float) -> float:
        if not 1 <= value <= 3600:
            raise ValueError("must be within 1..3600 seconds")
        return value

    @field_validator("clock_sync_limit_s")
    @classmethod
    def _check_clock_sync_limit(cls, value: float) -> float:
        if not 0 <= value <= 3600:
            raise ValueError("must be within 0..3600 seconds (0 = never sync)")
        return value

    @model_validator(mode="after")
    def _check_clock_limits(self) -> Settings:
        if self.clock_sync_limit_s and self.clock_sync_limit_s <= self.clock_offset_threshold_s:
            raise ValueError(
                f"clock_sync_limit_s ({self.clock_sync_limit_s:g}) must be above "
                f"clock_offset_threshold_s ({self.clock_offset_threshold_s:g}), or 0"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        scheme = urlsplit(url).scheme.split("+")[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError(
                "must start with sqlite:/// or postgresql:// (got scheme "
                f"{urlsplit(url).scheme or 'none'!r})"
            )
        return value

    @field_validator("fleet_file")
    @classmethod
    def _check_fleet_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("is not a file")
        return value

    @field_validator("time_scale")
    @classmethod
    def _check_time_scale(cls, value: float) -> float:
        if not 1 <= value <= 3600:
            raise ValueError("must be within 1..3600 (1 = real time)")
        return value

    @field_validator("time_origin")
    @classmethod
    def _check_time_origin(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("needs a timezone (e.g. 2026-05-04T00:00:00Z)")
        return value

    @field_validator("spool_max_rows")
    @classmethod
    def _check_spool_max_rows(cls, value: int) -> int:
        if not 100 <= value <= 1_000_000_000:
            raise ValueError("must be within 100..1,000,000,000 rows")
        return value

    @field_validator("interval_minutes")
    @classmethod
    def _check_interval(cls, value: int) -> int:
        if value <= 0 or (60 % value and 1440 % value):
            raise ValueError("must be a positive number of minutes that divides an hour or a day")
        return value

    @field_validator("site_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("is not a known IANA timezone (e.g. Asia/Shanghai, UTC)") from exc
        return value

    @property
    def interval(self) -> timedelta:
        """The interval length as a timedelta."""
        return timedelta(minutes=self.interval_minutes)

    @property
    def spool_path(self) -> Path:
        """The spool folder: ``spool_dir``, or the default for the database."""
        if self.spool_dir is not None:
            return self.spool_dir
        url = urlsplit(self.database_url.get_secret_value())
        if url.scheme.split("+")[0] == "sqlite" and url.path not in ("", "/", "/:memory:"):
            return Path(url.path[1:]).parent / "amigate-spool"
        return Path("amigate-spool")

    @property
    def timezone(self) -> ZoneInfo:
        """The site timezone."""
        return ZoneInfo(self.site_timezone)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the sources: constructor, environment, TOML file, defaults."""
        toml_file = _config_file_from(init_settings)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


_CONFIG_FILE_OVERRIDE: dict[str, Path | None] = {}


def _config_file_from(init_settings: PydanticBaseSettingsSource) -> Path | None:
    path = _CONFIG_FILE_OVERRIDE.get("path")
    if path is not None:
        return path
    env = os.environ.get("AMIGATE_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the settings, failing with a ConfigError that names the setting and the value.

    Args:
        config_file: a TOML file to read (else ``AMIGATE_CONFIG`` or ``./amigate.toml``).
        **overrides: values that win over every other source (tests, CLI flags).

    Returns:
        The validated settings.

    Raises:
        ConfigError: the file is missing or not TOML, or a setting is invalid.
    """
    path = Path(config_file) if config_file is not None else None
    if path is None and os.environ.get("AMIGATE_CONFIG"):
        path = Path(os.environ["AMIGATE_CONFIG"])
    if path is not None and not path.is_file():
        raise ConfigError(f"settings file {str(path)!r} does not exist")
    _CONFIG_FILE_OVERRIDE["path"] = path
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    except ValueError as exc:  # TOML syntax errors surface as ValueError subclasses
        raise ConfigError(f"settings file {str(path)!r} is not valid TOML: {exc}") from None
    finally:
        _CONFIG_FILE_OVERRIDE.pop("path", None)


def _describe(exc: ValidationError, path: Path | None) -> str:
    problems = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        value = err.get("input")
        shown = "***" if "url" in name or "secret" in name or "password" in name else value
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown setting {name!r}")
        else:
            problems.append(f"setting {name!r} = {shown!r}: {err['msg']}")
    where = f" (from environment AMIGATE_* or {path})" if path else ""
    return "invalid settings" + where + ": " + "; ".join(problems)


def masked_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def effective_settings(settings: Settings) -> dict[str, Any]:
    """The settings as a plain dict with secrets masked, for ``amigate config show``."""
    data = settings.model_dump(mode="json")
    data["database_url"] = masked_url(settings.database_url.get_secret_value())
    return data
