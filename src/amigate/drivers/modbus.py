"""Modbus master over pymodbus: RTU on serial, RTU over TCP, Modbus TCP.

The only module (besides the simulator) that imports pymodbus. It owns the bus
discipline: one request in flight per bus, a pause when the device ID changes,
a per-meter timeout and retry count (never pymodbus's 3 s × 3 retries), and the
isolation of dead meters, which are backed off and probed later so that they
never stall the other meters on their bus or drop its connection.

URLs: ``serial:///dev/ttyUSB0?baud=9600&parity=N`` (RTU on a serial port),
``rtu+tcp://HOST:PORT`` (RTU frames through a transparent RS-485 gateway) and
``modbus+tcp://HOST:PORT`` (Modbus TCP, MBAP header; also a Modbus TCP gateway).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import (
    ConnectionException,
    ModbusException,
    ModbusIOException,
    ParameterException,
)
from pymodbus.framer import FramerType

from amigate.drivers.modbus_plan import (
    Block,
    PointValue,
    decode_block,
    modbus_points,
    normalize,
    plan_blocks,
)
from amigate.drivers.modbus_url import ModbusTarget, parse_modbus_url
from amigate.errors import (
    AmigateError,
    ConfigError,
    ConnectionLost,
    DeviceRejected,
    MeterUnavailable,
    PointUnsupported,
    PortUnavailable,
    ProtocolError,
    ReadTimeout,
    UnexpectedReply,
)
from amigate.meter_models import MeterModel, PointSpec
from amigate.transports.base import DEFAULT_EXCEPTION_MAP, ExceptionMap, map_exceptions

__all__ = ["ModbusBus", "ModbusMeter", "ModbusTarget", "parse_modbus_url"]

_LOG = logging.getLogger(__name__)
#: pymodbus errors to ours, most specific first.
PYMODBUS_EXCEPTION_MAP: ExceptionMap = {
    ModbusIOException: ReadTimeout,
    ConnectionException: ConnectionLost,
    ParameterException: ConfigError,
    ModbusException: ProtocolError,
    **DEFAULT_EXCEPTION_MAP,
}
_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


@dataclass
class BusStats:
    """Counters a poller can export as metrics."""

    requests: int = 0
    timeouts: int = 0
    retries: int = 0
    exceptions: int = 0
    switch_pauses: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class ModbusBus:
    """One serial port or TCP endpoint with the meters behind it: one request at a time."""

    def __init__(
        self,
        target: ModbusTarget | str,
        *,
        switch_pause: float | None = None,
        client_timeout: float = 5.0,
    ) -> None:
        """Set up the bus (nothing is opened until :meth:`open`).

        Args:
            target: the URL or parsed target.
            switch_pause: seconds of silence before talking to another device ID
                (default 20 ms on RTU, none on Modbus TCP).
            client_timeout: pymodbus's own timeout, a backstop behind the per-meter
                timeouts; also the connect timeout.

        Raises:
            ConfigError: a malformed URL.
        """
        self.target = parse_modbus_url(target) if isinstance(target, str) else target
        default_pause = 0.0 if self.target.mode == "modbus+tcp" else 0.02
        self.switch_pause = default_pause if switch_pause is None else switch_pause
        self.stats = BusStats()
        self._lock = asyncio.Lock()
        self._last_id: int | None = None
        self._client = self._make_client(client_timeout)
        # Dead meters must not make pymodbus drop the connection for the live ones.
        self._client.set_max_no_responses(1_000_000)

    @property
    def name(self) -> str:
        """The bus URL, for messages."""
        return self.target.url

    def _make_client(self, timeout: float) -> AsyncModbusSerialClient | AsyncModbusTcpClient:
        if self.target.serial is not None:
            s = self.target.serial
            return AsyncModbusSerialClient(
                s.port, framer=FramerType.RTU, baudrate=s.baudrate, bytesize=s.bytesize,
                parity=s.parity, stopbits=int(s.stopbits), timeout=timeout, retries=0,
                reconnect_delay=0.1,
            )  # fmt: skip
        assert self.target.tcp is not None
        framer = FramerType.RTU if self.target.mode == "rtu+tcp" else FramerType.SOCKET
        tcp = self.target.tcp
        return AsyncModbusTcpClient(
            tcp.host, port=tcp.port, framer=framer, timeout=timeout, retries=0,
            reconnect_delay=0.1,
        )  # fmt: skip

    async def open(self) -> None:
        """Open the port or connection.

        Raises:
            PortUnavailable: it cannot be opened.
        """
        with map_exceptions(PYMODBUS_EXCEPTION_MAP, context=f"open {self.name}"):
            connected = await self._client.connect()
        if not connected:
            raise PortUnavailable(f"cannot open {self.name}")

    async def aclose(self) -> None:
        """Close the port or connection; closing twice is harmless."""
        self._client.close()

    async def __aenter__(self) -> ModbusBus:
        """Open the bus."""
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the bus."""
        await self.aclose()

    async def read(
        self,
        device_id: int,
        function: int,
        address: int,
        count: int,
        *,
        timeout: float,  # noqa: ASYNC109
        retries: int,
    ) -> list[int]:
        """Read ``count`` registers with FC3 or FC4.

        Args:
            device_id: the meter's Modbus ID (1..247).
            function: 3 (holding) or 4 (input registers).
            address: the first 0-based wire address.
            count: registers to read (1..125).
            timeout: seconds to wait for each reply.
            retries: further attempts after a timeout or an unexpected reply.

        Returns:
            The register words.

        Raises:
            ReadTimeout: no reply on any attempt.
            UnexpectedReply: replies with the wrong length on every attempt.
            DeviceRejected: an exception response (``code`` is the exception code;
                :class:`PointUnsupported` for code 2).
            ConnectionLost: the connection or port failed.
        """
        if function not in (3, 4):
            raise ConfigError(f"function {function} is not 3 or 4")
        call = (
            self._client.read_holding_registers
            if function == 3
            else self._client.read_input_registers
        )
        what = f"ID {device_id} FC{function} {address}+{count} on {self.name}"
        async with self._lock:
            failure: AmigateError | None = None
            for attempt in range(retries + 1):
                if attempt:
                    self.stats.retries += 1
                if self._last_id is not None and self._last_id != device_id and self.switch_pause:
                    self.stats.switch_pauses += 1
                    await asyncio.sleep(self.switch_pause)
                self._last_id = device_id
                self.stats.requests += 1
                try:
                    with map_exceptions(PYMODBUS_EXCEPTION_MAP, context=what):
                        async with asyncio.timeout(timeout):
                            reply = await call(address, count=count, device_id=device_id)
                except (ReadTimeout, UnexpectedReply) as exc:
                    self.stats.timeouts += isinstance(exc, ReadTimeout)
                    # A late reply may still come: let the line settle before the next
                    # request, whoever it is for.
                    self._last_id = None
                    failure = exc
                    continue
                if reply.isError():
                    self.stats.exceptions += 1
                    code = int(getattr(reply, "exception_code", 0))
                    name = _EXCEPTION_NAMES.get(code, "unknown exception")
                    error = PointUnsupported if code == 2 else DeviceRejected
                    raise error(f"{what}: exception {code} ({name})", code=code, reasons=(name,))
                registers = list(reply.registers)
                if len(registers) == count:
                    return registers
                failure = UnexpectedReply(f"{what}: {len(registers)} registers in the reply")
            assert failure is not None
            if isinstance(failure, ReadTimeout):
                raise ReadTimeout(
                    f"{what}: no reply within {timeout:g} s, {retries + 1} attempt(s)"
                )
            raise failure


class ModbusMeter:
    """One meter of a given model behind a device ID on a bus."""

    def __init__(
        self,
        bus: ModbusBus,
        model: MeterModel,
        device_id: int,
        *,
        timeout: float = 0.5,
        retries: int = 1,
        backoff: float | None = 10.0,
        backoff_max: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Set up the meter.

        Args:
            bus: the bus it is on.
            model: its model definition (a Modbus model).
            device_id: its Modbus ID, 1..247.
            timeout: seconds to wait for each reply.
            retries: further attempts per request after a timeout.
            backoff: seconds a meter stays isolated after its first failed poll;
                doubled on each further failure, up to ``backoff_max``. ``None``: the
                driver never isolates (a bus worker that isolates meters itself).
            backoff_max: the longest isolation between two probes.
            clock: monotonic seconds (tests pass a fake).

        Raises:
            ConfigError: not a Modbus model, or an ID outside 1..247.
        """
        if model.modbus is None:
            raise ConfigError(f"model {model.id} is not a Modbus model")
        if not 1 <= device_id <= 247:
            raise ConfigError(f"Modbus device ID {device_id} is outside 1..247")
        if timeout <= 0 or retries < 0:
            raise ConfigError("timeout must be > 0 and retries >= 0")
        self.bus = bus
        self.model = model
        self.device_id = device_id
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._clock = clock
        self.unsupported: set[str] = set()
        self.failures = 0
        self.down_until: float | None = None
        self._plans: dict[tuple[bool, tuple[str, ...]], list[Block]] = {}

    @property
    def available(self) -> bool:
        """False while the meter is isolated."""
        return self.down_until is None

    def __repr__(self) -> str:
        """Model and address, for logs."""
        return f"<ModbusMeter {self.model.id} ID {self.device_id} on {self.bus.name}>"

    def _plan(self, points: tuple[PointSpec, ...], single: bool) -> list[Block]:
        key = (single, tuple(sorted(p.channel + p.kind for p in points)))
        if key not in self._plans:
            assert self.model.modbus is not None
            wanted = [p for p in points if p.channel not in self.unsupported]
            self._plans[key] = plan_blocks(wanted, self.model.modbus, single=single)
        return self._plans[key]

    async def poll(
        self, points: Iterable[PointSpec] | None = None, *, single: bool = False
    ) -> list[PointValue]:
        """Read every point of the model (or ``points``) in as few requests as allowed.

        Args:
            points: a subset of the model's points; default all of them.
            single: one request per point (for comparison; slower).

        Returns:
            One value per point, in model order; unsupported points and "not
            available" sentinels come back as missing values.

        Raises:
            MeterUnavailable: the meter is isolated and not due for a probe.
            ReadTimeout: the meter did not answer (it is isolated from now on).
            DeviceRejected: an exception response other than 2.
            ConnectionLost: the bus failed (the meter is not blamed).
        """
        wanted = tuple(points) if points is not None else modbus_points(self.model)
        retries = self._admit()
        values: dict[tuple[str, str], PointValue] = {}
        try:
            for block in self._plan(wanted, single):
                try:
                    registers = await self._read(block, retries)
                    decoded = decode_block(block, registers)
                except PointUnsupported:
                    decoded = await self._isolate_unsupported(block, retries)
                for value in decoded:
                    values[value.key] = value
        except ReadTimeout:
            self._failed()
            raise
        self._succeeded()
        out = []
        for point in wanted:
            found = values.get((point.channel, point.kind.value))
            if found is None:
                _, unit = normalize(None, point.unit)
                found = PointValue(
                    point.channel, point.name, None, unit, "unsupported", point.kind.value
                )
            out.append(found)
        return out

    async def read_point(self, channel: str) -> PointValue:
        """Read one point by channel.

        Raises:
            KeyError: the model has no such point.
            PointUnsupported: this meter does not have it.
            MeterUnavailable: the meter is isolated.
            ReadTimeout: no answer.
        """
        point = self.model.point(channel)
        if channel in self.unsupported:
            raise PointUnsupported(f"{self!r}: {channel} is unsupported on this meter", code=2)
        (value,) = await self.poll([point])
        if value.missing == "unsupported":
            raise PointUnsupported(f"{self!r}: {channel} is unsupported on this meter", code=2)
        return value

    async def _read(self, block: Block, retries: int) -> list[int]:
        return await self.bus.read(
            self.device_id, block.function, block.address, block.count,
            timeout=self.timeout, retries=retries,
        )  # fmt: skip

    async def _isolate_unsupported(self, block: Block, retries: int) -> list[PointValue]:
        """Read a rejected block point by point; remember the points the meter lacks.

        Returns:
            The values of the points that did answer.
        """
        spec = self.model.modbus
        assert spec is not None
        values: list[PointValue] = []
        for single in plan_blocks(block.points, spec, single=True):
            try:
                registers = await self._read(single, retries)
            except PointUnsupported:
                self._mark_unsupported(single.points[0])
                continue
            values.extend(decode_block(single, registers))
        self._plans.clear()
        return values

    def _mark_unsupported(self, point: PointSpec) -> None:
        if point.channel not in self.unsupported:
            _LOG.info("%r: %s (%s) is unsupported on this meter", self, point.channel, point.name)
            self.unsupported.add(point.channel)

    def _admit(self) -> int:
        """Return the retries for this poll, or raise when the meter is isolated."""
        if self.down_until is None or self.backoff is None:
            return self.retries
        if self._clock() < self.down_until:
            raise MeterUnavailable(
                f"{self!r} is isolated for another {self.down_until - self._clock():.1f} s "
                f"after {self.failures} failed poll(s)"
            )
        return 0  # a probe: one attempt, so a still-dead meter costs one timeout

    def _failed(self) -> None:
        self.failures += 1
        if self.backoff is None:
            return
        delay = min(self.backoff_max, self.backoff * 2 ** (self.failures - 1))
        if self.down_until is None:
            _LOG.warning("%r does not answer; isolated, probing again in %.0f s", self, delay)
        self.down_until = self._clock() + delay

    def _succeeded(self) -> None:
        if self.down_until is not None:
            _LOG.info("%r answers again after %d failed poll(s)", self, self.failures)
        self.failures = 0
        self.down_until = None
