"""Simulated meters, buses and fleets for tests, demos and benchmarks."""

from __future__ import annotations

from amigate.simulators.bus import VirtualBus
from amigate.simulators.dlt645_meter import Dlt645Meter, Reply
from amigate.simulators.faults import Fault, FaultKind, FaultSet
from amigate.simulators.load_shape import LoadShape, TouSchedule
from amigate.simulators.physics import MeterPhysics, RegisterMode
from amigate.simulators.scenario import (
    BusSpec,
    MeterSpec,
    Scenario,
    build_bus,
    build_buses,
    load_scenario,
)
from amigate.simulators.server import BusLink, ManualClock, PtyServer, serve_tcp

__all__ = [
    "BusLink",
    "BusSpec",
    "Dlt645Meter",
    "Fault",
    "FaultKind",
    "FaultSet",
    "LoadShape",
    "ManualClock",
    "MeterPhysics",
    "MeterSpec",
    "PtyServer",
    "RegisterMode",
    "Reply",
    "Scenario",
    "TouSchedule",
    "VirtualBus",
    "build_bus",
    "build_buses",
    "load_scenario",
    "serve_tcp",
]
