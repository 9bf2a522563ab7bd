"""Meter access: DL/T 645 (and later Modbus) masters over injected transports."""

from __future__ import annotations

from amigate.drivers.dlt645 import ClientStats, Dlt645Client, address_matches

__all__ = ["ClientStats", "Dlt645Client", "address_matches"]
