"""Serve simulated Modbus meters with pymodbus: RTU on a pseudo-terminal, RTU or Modbus TCP.

One server is one bus: several device IDs answer on it (multi-drop). An ID
nobody simulates stays silent as on a real RS-485 bus; pymodbus 3.16 would answer
with an exception (and log a traceback), so outgoing frames for such IDs, and for
meters told to be silent, are dropped on their way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import Iterable
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from amigate.errors import ConfigError, PortUnavailable
from amigate.simulators.modbus_meter import ModbusSimMeter, register_spans

__all__ = ["ModbusSimServer", "PtyCable"]

_LOG = logging.getLogger(__name__)


class PtyCable:
    """A null-modem cable made of two raw pseudo-terminals bridged in-process.

    The server opens :attr:`server_path`, masters open :attr:`path`; bytes written
    on one end come out of the other, as on a two-wire bus.
    """

    def __init__(self) -> None:
        """Create both pseudo-terminals (raw); :meth:`start` begins bridging."""
        self._fds: list[tuple[int, int]] = []
        for _ in range(2):
            master, slave = os.openpty()
            tty.setraw(master)
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._fds.append((master, slave))
        self.server_path = os.ttyname(self._fds[0][1])
        self.path = os.ttyname(self._fds[1][1])
        self._started = False

    def start(self) -> None:
        """Start copying bytes between the two ends."""
        loop = asyncio.get_running_loop()
        (a, _), (b, _) = self._fds
        loop.add_reader(a, self._copy, a, b)
        loop.add_reader(b, self._copy, b, a)
        self._started = True

    @staticmethod
    def _copy(source: int, sink: int) -> None:
        try:
            data = os.read(source, 4096)
        except (BlockingIOError, OSError):  # EIO while nobody has the other end open
            return
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(sink, view) :]
            except BlockingIOError:
                return  # the far end is not reading: the line drops bytes, as a real one would
            except OSError:
                return

    def close(self) -> None:
        """Stop bridging and close both pseudo-terminals."""
        if self._started:
            loop = asyncio.get_running_loop()
            for master, _ in self._fds:
                loop.remove_reader(master)
            self._started = False
        for pair in self._fds:
            for fd in pair:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fds = []


class ModbusSimServer:
    """One simulated Modbus bus served by pymodbus."""

    def __init__(self, meters: Iterable[ModbusSimMeter]) -> None:
        """Collect the meters of the bus.

        Raises:
            ConfigError: two meters share a device ID.
        """
        self.meters: dict[int, ModbusSimMeter] = {}
        for meter in meters:
            if meter.device_id in self.meters:
                raise ConfigError(f"two simulated meters with device ID {meter.device_id}")
            self.meters[meter.device_id] = meter
        self.url = ""
        self._server: ModbusSerialServer | ModbusTcpServer | None = None
        self._cable: PtyCable | None = None
        self._id_at = 0

    def _devices(self) -> list[SimDevice]:
        devices = [
            SimDevice(
                id=meter.device_id,
                simdata=[
                    SimData(start, count=count, values=0, datatype=DataType.REGISTERS)
                    for start, count in register_spans(meter.model)
                ],
                action=self._action(meter),
            )
            for meter in self.meters.values()
        ]
        # A catch-all for IDs nobody simulates (pymodbus raises KeyError otherwise);
        # its replies are dropped by _outgoing.
        devices.append(SimDevice(id=0, simdata=[SimData(0, values=0, datatype=DataType.REGISTERS)]))
        return devices

    @staticmethod
    def _action(meter: ModbusSimMeter) -> Any:
        async def action(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            code = meter.rejects(address, count)
            if code is not None:
                return ExcCodes(code)
            if function_code in (3, 4) and set_values is None:
                for addr, word in meter.registers().items():
                    registers[addr - start_address] = word
            return None

        return action

    def _outgoing(self, sending: bool, data: bytes) -> bytes:
        """Drop replies from IDs that are not on the bus or are told to be silent."""
        if not sending or len(data) <= self._id_at:
            return data
        meter = self.meters.get(data[self._id_at])
        if meter is None or meter.silent:
            return b""
        return data

    async def serve_pty(self, *, baud: int = 9600) -> str:
        """Serve the bus as RTU on a pseudo-terminal.

        Returns:
            The URL for masters: ``serial:///dev/pts/N?baud=...&parity=N``.

        Raises:
            PortUnavailable: the server could not open its end.
        """
        self._cable = PtyCable()
        self._cable.start()
        self._id_at = 0
        self._server = ModbusSerialServer(
            self._devices(), framer=FramerType.RTU, port=self._cable.server_path,
            baudrate=baud, trace_packet=self._outgoing,
        )  # fmt: skip
        await self._start()
        self.url = f"serial://{self._cable.path}?baud={baud}&parity=N"
        return self.url

    async def serve_tcp(self, host: str = "127.0.0.1", port: int = 0, *, rtu: bool = False) -> str:
        """Serve the bus on TCP: Modbus TCP, or RTU frames like a transparent gateway.

        Args:
            host: the address to listen on.
            port: the port; 0 picks a free one.
            rtu: RTU framing (``rtu+tcp://``) instead of Modbus TCP (``modbus+tcp://``).

        Returns:
            The URL for masters.

        Raises:
            PortUnavailable: the port cannot be bound.
        """
        self._id_at = 0 if rtu else 6  # RTU: first byte; MBAP: unit id after 6 bytes
        self._server = ModbusTcpServer(
            self._devices(), framer=FramerType.RTU if rtu else FramerType.SOCKET,
            address=(host, port), trace_packet=self._outgoing,
        )  # fmt: skip
        await self._start()
        listener: Any = self._server.transport
        bound = listener.sockets[0].getsockname()
        self.url = f"{'rtu' if rtu else 'modbus'}+tcp://{bound[0]}:{bound[1]}"
        return self.url

    async def _start(self) -> None:
        assert self._server is not None
        try:
            await self._server.serve_forever(background=True)
        except (RuntimeError, OSError) as exc:
            raise PortUnavailable(f"Modbus simulator cannot listen: {exc}") from exc

    async def aclose(self) -> None:
        """Stop serving and release the port or pseudo-terminals."""
        if self._server is not None:
            with contextlib.suppress(OSError, RuntimeError):
                await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None
        if self._cable is not None:
            self._cable.close()
            self._cable = None

    async def __aenter__(self) -> ModbusSimServer:
        """Nothing to do; serve with :meth:`serve_pty` or :meth:`serve_tcp`."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop serving."""
        await self.aclose()
