"""The rule registry: each rule is a pure function over one meter's data, registered by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from amigate.config import VeeSettings
from amigate.domain import Anomaly
from amigate.vee.context import MeterData

__all__ = ["RULES", "Rule", "rule", "runs"]

#: A rule: the meter's data and the thresholds in, the anomalies it finds out.
Rule = Callable[[MeterData, VeeSettings], list[Anomaly]]
#: Every registered rule, by name, in registration order.
RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    """Register a rule under ``name``.

    Raises:
        ValueError: another rule already has that name.
    """

    def register(fn: Rule) -> Rule:
        if name in RULES:
            raise ValueError(f"a validation rule named {name!r} is already registered")
        RULES[name] = fn
        return fn

    return register


def runs(flags: Sequence[bool], min_length: int = 1) -> Iterator[tuple[int, int]]:
    """Yield ``(first, last)`` of each run of true flags at least ``min_length`` long."""
    if True not in flags:
        return
    start = -1
    for i, flag in enumerate(flags):
        if flag:
            if start < 0:
                start = i
        elif start >= 0:
            if i - start >= min_length:
                yield start, i - 1
            start = -1
    if start >= 0 and len(flags) - start >= min_length:
        yield start, len(flags) - 1
