"""Transport URLs: ``serial:///dev/ttyUSB0?baud=2400&parity=E`` and ``tcp://host:port``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qs, urlsplit

from amigate.errors import ConfigError
from amigate.transports.base import Transport

_PARITIES = ("N", "E", "O", "M", "S")
_BAUDS = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


@dataclass(frozen=True, kw_only=True)
class SerialParams:
    """Where and how to open a serial port; the defaults are DL/T 645-2007's 2400 8E1."""

    port: str
    baudrate: int = 2400
    bytesize: int = 8
    parity: str = "E"
    stopbits: float = 1

    def __post_init__(self) -> None:
        """Check the values.

        Raises:
            ConfigError: a value is outside what serial lines use.
        """
        if not self.port:
            raise ConfigError("serial URL: no device path (use serial:///dev/ttyUSB0)")
        if self.baudrate not in _BAUDS:
            raise ConfigError(f"serial URL: baud={self.baudrate} is not one of {_BAUDS}")
        if self.bytesize not in (5, 6, 7, 8):
            raise ConfigError(f"serial URL: bytesize={self.bytesize} is not 5, 6, 7 or 8")
        if self.parity not in _PARITIES:
            raise ConfigError(f"serial URL: parity={self.parity!r} is not one of N, E, O, M, S")
        if self.stopbits not in (1, 1.5, 2):
            raise ConfigError(f"serial URL: stopbits={self.stopbits} is not 1, 1.5 or 2")

    @property
    def bits_per_char(self) -> float:
        """Bits on the wire per byte: start + data + parity + stop (11 for 8E1)."""
        return 1 + self.bytesize + (self.parity != "N") + self.stopbits

    @property
    def url(self) -> str:
        """The canonical URL for these parameters."""
        stop = int(self.stopbits) if self.stopbits != 1.5 else 1.5
        return (
            f"serial://{self.port}?baud={self.baudrate}&parity={self.parity}"
            f"&stopbits={stop}&bytesize={self.bytesize}"
        )


@dataclass(frozen=True, kw_only=True)
class TcpParams:
    """A transparent serial server or DTU reached over TCP."""

    host: str
    port: int
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        """Check the values.

        Raises:
            ConfigError: no host, or a port outside 1–65535.
        """
        if not self.host:
            raise ConfigError("tcp URL: no host (use tcp://HOST:PORT)")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"tcp URL: port {self.port} is outside 1-65535")
        if self.connect_timeout <= 0:
            raise ConfigError(f"tcp URL: connect_timeout={self.connect_timeout} must be > 0")

    @property
    def url(self) -> str:
        """The canonical URL for these parameters."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


TransportParams = SerialParams | TcpParams


def parse_url(url: str) -> TransportParams:
    """Parse a transport URL.

    ``serial:///dev/ttyUSB0?baud=2400&parity=E&stopbits=1&bytesize=8`` (every query
    parameter optional) or ``tcp://HOST:PORT[?connect_timeout=S]``.

    Args:
        url: the URL.

    Returns:
        The parameters it describes.

    Raises:
        ConfigError: the URL is malformed; the message names the problem.
    """
    parts = urlsplit(url)
    try:
        query = {k: v[-1] for k, v in parse_qs(parts.query, strict_parsing=False).items()}
    except ValueError as exc:  # pragma: no cover - parse_qs is lenient unless strict
        raise ConfigError(f"transport URL {url!r}: bad query: {exc}") from exc
    if parts.scheme == "serial":
        return _serial_params(url, parts.netloc + parts.path, query)
    if parts.scheme == "tcp":
        return _tcp_params(url, parts, query)
    if not parts.scheme:
        raise ConfigError(
            f"transport URL {url!r} has no scheme: use serial:///dev/ttyUSB0 or tcp://HOST:PORT"
        )
    raise ConfigError(f"transport URL {url!r}: unknown scheme {parts.scheme!r} (serial or tcp)")


def _int(url: str, key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"transport URL {url!r}: {key}={value!r} is not an integer") from None


def _serial_params(url: str, port: str, query: dict[str, str]) -> SerialParams:
    unknown = set(query) - {"baud", "parity", "stopbits", "bytesize"}
    if unknown:
        raise ConfigError(f"serial URL {url!r}: unknown parameter(s) {', '.join(sorted(unknown))}")
    stop_text = query.get("stopbits", "1")
    try:
        stopbits = float(stop_text)
    except ValueError:
        raise ConfigError(f"serial URL {url!r}: stopbits={stop_text!r} is not a number") from None
    try:
        return SerialParams(
            port=port,
            baudrate=_int(url, "baud", query.get("baud", "2400")),
            bytesize=_int(url, "bytesize", query.get("bytesize", "8")),
            parity=query.get("parity", "E").upper(),
            stopbits=stopbits,
        )
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in {url!r})") from None


def _tcp_params(url: str, parts: SplitResult, query: dict[str, str]) -> TcpParams:
    unknown = set(query) - {"connect_timeout"}
    if unknown:
        raise ConfigError(f"tcp URL {url!r}: unknown parameter(s) {', '.join(sorted(unknown))}")
    if parts.path not in ("", "/"):
        raise ConfigError(f"tcp URL {url!r}: unexpected path {parts.path!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"tcp URL {url!r}: the port is not a number in 0-65535") from None
    if port is None:
        raise ConfigError(f"tcp URL {url!r}: no port (use tcp://HOST:PORT)")
    timeout_text = query.get("connect_timeout", "5")
    try:
        timeout = float(timeout_text)
    except ValueError:
        raise ConfigError(
            f"tcp URL {url!r}: connect_timeout={timeout_text!r} is not a number"
        ) from None
    try:
        return TcpParams(host=parts.hostname or "", port=port, connect_timeout=timeout)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in {url!r})") from None


async def open_transport(target: str | TransportParams) -> Transport:
    """Open the transport a URL or parameter set describes.

    Args:
        target: a URL accepted by :func:`parse_url`, or already parsed parameters.

    Returns:
        The opened transport; the caller closes it with ``aclose()``.

    Raises:
        ConfigError: the URL is malformed.
        PortUnavailable: the port or endpoint cannot be opened.
        ConnectTimeout: a TCP connection was not accepted in time.
    """
    params = parse_url(target) if isinstance(target, str) else target
    if isinstance(params, TcpParams):
        from amigate.transports.tcp import open_tcp

        return await open_tcp(params.host, params.port, connect_timeout=params.connect_timeout)
    from amigate.transports.serial import open_serial

    return await open_serial(
        params.port,
        baudrate=params.baudrate,
        bytesize=params.bytesize,
        parity=params.parity,
        stopbits=params.stopbits,
    )
