"""One exception tree for amigate: every error we raise is an ``AmigateError``.

Foreign exceptions (``OSError``, ``serial.SerialException``, SQLAlchemy and
pymodbus errors) are translated once, at the boundary where they occur, with
``raise ... from exc`` so that upper layers only ever see this tree.
"""

from __future__ import annotations


class AmigateError(Exception):
    """Root of every error amigate raises on purpose."""


# --- configuration -----------------------------------------------------------


class ConfigError(AmigateError):
    """A setting, a configuration file or a model definition is invalid.

    The message names the setting (or file and entry) and the offending value.
    """


# --- protocol ----------------------------------------------------------------


class ProtocolError(AmigateError):
    """The bytes on the wire do not follow the protocol."""


class FrameError(ProtocolError):
    """A frame could not be decoded."""


class ChecksumError(FrameError):
    """A frame's checksum does not match its content.

    Attributes:
        expected: the checksum computed over the frame.
        received: the checksum found in the frame.
    """

    def __init__(self, message: str, *, expected: int, received: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.received = received


class FrameFormatError(FrameError):
    """A frame is malformed: bad start or end byte, impossible length, bad BCD."""


class FrameTooLong(FrameFormatError):
    """A frame (or the garbage before one) exceeds the decoder's size cap."""


class DataError(ProtocolError):
    """A data item inside a well-formed frame cannot be decoded (bad BCD, wrong size)."""


class UnknownDataIdentifier(DataError):
    """A DL/T 645 data identifier is not in the catalogue for the protocol version asked for."""


class UnexpectedReply(ProtocolError):
    """A reply does not answer the request (other address, function or data identifier)."""


class DeviceRejected(ProtocolError):
    """The meter answered with an abnormal reply or a Modbus exception.

    Attributes:
        code: the DL/T 645 error byte or the Modbus exception code.
        reasons: human-readable decoding of ``code``.
    """

    def __init__(self, message: str, *, code: int, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.reasons = reasons


# --- transport ---------------------------------------------------------------


class TransportError(AmigateError):
    """A serial port or TCP connection failed."""


class PortUnavailable(TransportError):
    """A serial port or TCP endpoint cannot be opened."""


class ConnectTimeout(TransportError):
    """Opening a connection took longer than allowed."""


class ReadTimeout(TransportError):
    """A device did not answer within its response timeout."""


class ConnectionLost(TransportError):
    """An open connection was closed by the peer or the operating system."""


# --- readings and storage ----------------------------------------------------


class ReadingRejected(AmigateError):
    """A reading is implausible or inconsistent and was not stored as actual."""


class StorageError(AmigateError):
    """The database failed or refused an operation."""


class FeedCursorExpired(StorageError):
    """The change-feed entries after a cursor were pruned: the client missed some."""


class StorageUnavailable(StorageError):
    """The database cannot be reached (server down, wrong host or port, missing file)."""


class SchemaOutOfDate(StorageError):
    """The database schema is not at the revision this version of amigate expects."""


class AnomalyStateError(StorageError):
    """An anomaly status change is not allowed (e.g. acknowledging a resolved anomaly)."""


class IngestConflict(StorageError):
    """A batch tried to store a different value under a key that is already stored.

    Stored rows are immutable: a correction is a new version, never an overwrite.
    """


# --- Modbus ------------------------------------------------------------------


class PointUnsupported(DeviceRejected):
    """A Modbus meter answered exception 2 (illegal data address) for a point.

    The point exists in the model but not on this meter (a variant, a firmware or a
    configuration without it); the driver remembers it and stops asking.
    """


class MeterUnavailable(TransportError):
    """A meter is isolated after failing to answer; it is probed again after a backoff.

    Raised without touching the bus, so a dead meter costs the others nothing.
    """


class ServiceUnreachable(AmigateError):
    """An API process could not get an answer from the service it belongs to."""
