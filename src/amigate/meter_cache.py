"""The meters of the last registration, kept in a local file for a start without database.

``amigate run`` stores the fleet's meters in the database and reads them back with
their ids; it keeps that list beside the spools. When the database cannot be
reached at start-up, the service starts from this file instead, so the buses are
read (into their spools) while the database is away.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

from amigate.domain import Meter, MeterRole, MeterStatus, Protocol
from amigate.errors import ConfigError

__all__ = ["load_meters", "save_meters"]

_DECIMALS = {"ct_ratio", "pt_ratio", "rated_voltage", "rated_current", "max_current"}
_ENUMS: dict[str, type[Any]] = {"protocol": Protocol, "role": MeterRole, "status": MeterStatus}


def save_meters(path: Path, meters: list[Meter]) -> None:
    """Write ``meters`` to ``path`` atomically (a crash leaves the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(m).items()}
        for m in meters
    ]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        json.dump({"meters": rows}, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


def load_meters(path: Path) -> list[Meter] | None:
    """The meters written by :func:`save_meters` (``None`` when there is no such file).

    Raises:
        ConfigError: the file is not a meter list (it names the file).
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the saved meter list: {exc}") from exc
    known = {f.name for f in fields(Meter)}
    try:
        return [
            Meter(**{k: _typed(k, v) for k, v in row.items() if k in known})
            for row in document["meters"]
        ]
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise ConfigError(f"{path}: not a saved meter list: {exc}") from exc


def _typed(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in _DECIMALS:
        return Decimal(value)
    return _ENUMS[key](value) if key in _ENUMS else value
