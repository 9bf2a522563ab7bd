"""Column types that behave the same on SQLite and PostgreSQL.

* ``UtcTimestamp``: ``timestamptz`` on PostgreSQL, integer epoch seconds on SQLite
  (SQLite's DateTime reads back naive and as text is slow to index); both read back
  as timezone-aware UTC datetimes, and a naive datetime is refused on the way in.
* ``ExactDecimal``: ``NUMERIC`` on PostgreSQL, text on SQLite (whose NUMERIC
  affinity would turn 0.1 into a float), for metadata such as CT ratios.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Numeric, String
from sqlalchemy.types import TypeDecorator, TypeEngine

from amigate.errors import ReadingRejected


class UtcTimestamp(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp, at one-second resolution on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Pick the storage type for ``dialect``."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        """Convert an aware datetime to the stored form."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ReadingRejected(f"timestamp {value.isoformat()} has no timezone")
        if dialect.name == "sqlite":
            return to_epoch(value)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Convert the stored form to an aware UTC datetime."""
        return from_stored(value)


def from_stored(value: object) -> datetime | None:
    """A stored time as an aware UTC datetime: epoch seconds (SQLite) or a datetime
    (PostgreSQL), as raw SQL returns them; None stays None."""
    return None if value is None else stored_time(value)


def stored_time(value: object) -> datetime:
    """A stored time that cannot be null, as :func:`from_stored` reads it."""
    if isinstance(value, int):
        return datetime.fromtimestamp(value, UTC)
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


def to_epoch(value: datetime) -> int:
    """Whole seconds since the Unix epoch of an aware datetime."""
    return int(value.timestamp())


class ExactDecimal(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC on PostgreSQL, its text on SQLite."""

    impl = Numeric(18, 6)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Pick the storage type for ``dialect``."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(Numeric(18, 6, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        """Store the decimal exactly."""
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        """Read the decimal back."""
        return None if value is None else exact_decimal(value)


def exact_decimal(value: str | Decimal) -> Decimal:
    """A stored exact decimal (its text on SQLite, NUMERIC on PostgreSQL) as raw SQL
    returns it, read back as ``ExactDecimal`` does."""
    return (value if isinstance(value, Decimal) else Decimal(value)).normalize()
