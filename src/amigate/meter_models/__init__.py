"""Meter model definitions: the TOML files in ``drivers/``, loaded into frozen dataclasses.

One file describes one meter model: which points it has, where each lives on the
meter (a DL/T 645 data identifier or a Modbus register), its unit, what kind of
quantity it is, and the normalized channel it maps to. Drivers, the simulators
and the normaliser all read the same definitions. Every file is validated when
loaded; an error names the file, the point and the problem.
"""

from __future__ import annotations

from amigate.meter_models.loader import load_model, load_models
from amigate.meter_models.spec import (
    MANUAL_NUMBERING,
    MODBUS_DTYPES,
    MODBUS_MAX_BLOCK,
    PROTOCOLS,
    UNITS,
    DataId,
    MemorySpec,
    MeterModel,
    ModbusSpec,
    PointKind,
    PointSpec,
    Poll,
    RatedValues,
    Register,
    SerialDefaults,
)

__all__ = [
    "MANUAL_NUMBERING",
    "MODBUS_DTYPES",
    "MODBUS_MAX_BLOCK",
    "PROTOCOLS",
    "UNITS",
    "DataId",
    "MemorySpec",
    "MeterModel",
    "ModbusSpec",
    "PointKind",
    "PointSpec",
    "Poll",
    "RatedValues",
    "Register",
    "SerialDefaults",
    "load_model",
    "load_models",
]
