"""amigate: AMI meter-data ingestion (DL/T 645 and Modbus) with validation before billing."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
