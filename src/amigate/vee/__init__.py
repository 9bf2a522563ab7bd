"""Validation before billing (VEE): rules, estimation, anomalies, transformer-area line loss.

Rules are small pure functions over one meter's data in columns, registered by
name (:data:`amigate.vee.registry.RULES`); :func:`validate` runs them in batch,
:func:`validate_since` after each flush of the collection service.
"""

from __future__ import annotations

from amigate.vee.engine import DAILY_RULES, VeeReport, validate, validate_since
from amigate.vee.registry import RULES

__all__ = ["DAILY_RULES", "RULES", "VeeReport", "validate", "validate_since"]
