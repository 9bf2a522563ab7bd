"""API keys: created with a random secret shown once, stored as a SHA-256 hash only.

A key reads ``amg_<prefix>_<secret>``. The prefix (public, unique) finds the
row; the hash of the whole key is compared in constant time. Keys carry 256
bits of randomness, so a fast hash is enough: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from amigate.errors import ConfigError, StorageError
from amigate.storage.driver_rows import fetch
from amigate.storage.engine import connected, translate_errors
from amigate.storage.ingest import utcnow
from amigate.storage.models import ApiKeyRow
from amigate.storage.types import stored_time

#: The scopes a key can carry; ``admin`` implies every other one, the others are
#: independent (a billing system usually holds ``read`` and ``billing``).
SCOPES = ("read", "billing", "operate", "admin")
_IMPLIED = {"admin": set(SCOPES)}
_KEY_PREFIX = "amg_"


@dataclass(frozen=True)
class ApiKey:
    """A stored API key (never its secret)."""

    id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, scope: str) -> bool:
        """Whether the key grants ``scope`` (directly or through a wider scope)."""
        return any(scope == s or scope in _IMPLIED.get(s, ()) for s in self.scopes)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _parse(key: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    if not key.startswith(_KEY_PREFIX) or len(key) > 200:
        return None
    prefix, sep, secret = key[len(_KEY_PREFIX) :].partition("_")
    return prefix if sep and prefix and secret else None


def _key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id, name=row.name, prefix=row.prefix,
        scopes=tuple(s for s in row.scopes.split(",") if s), created_at=row.created_at,
        revoked_at=row.revoked_at,
    )  # fmt: skip


_BY_PREFIX = text(  # every request runs it: on the driver's cursor (see driver_rows)
    "SELECT id, name, key_hash, scopes, created_at, revoked_at FROM api_keys "
    "WHERE prefix = :prefix"
)


class ApiKeys:
    """The API keys of one database."""

    def __init__(self, engine: Engine) -> None:
        """Work on ``engine`` (migrated)."""
        self.engine = engine

    def create(self, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
        """Create a key and return it with its secret (the only time the secret exists).

        Raises:
            ConfigError: an unknown scope, no scope, or a bad name.
        """
        wanted = sorted(set(scopes), key=SCOPES.index) if set(scopes) <= set(SCOPES) else None
        if not wanted:
            raise ConfigError(f"scopes must be one or more of {', '.join(SCOPES)} (got {scopes})")
        if not name or len(name) > 64:
            raise ConfigError("a key name must be 1..64 characters")
        prefix = secrets.token_hex(6)
        secret = f"{_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        row = ApiKeyRow(
            name=name, prefix=prefix, key_hash=_hash(secret), scopes=",".join(wanted),
            created_at=utcnow(), revoked_at=None,
        )  # fmt: skip
        with translate_errors(self.engine), Session(self.engine) as session, session.begin():
            session.add(row)
            session.flush()
            return _key(row), secret

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, by id."""
        with translate_errors(self.engine), Session(self.engine) as session:
            return [_key(r) for r in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]

    def revoke(self, ident: int | str) -> ApiKey:
        """Revoke a key by id or prefix; revoking twice keeps the first time.

        Raises:
            StorageError: no such key.
        """
        with translate_errors(self.engine), Session(self.engine) as session, session.begin():
            if isinstance(ident, int) or ident.isdigit():
                row = session.get(ApiKeyRow, int(ident))
            else:
                row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == ident)).first()
            if row is None:
                raise StorageError(f"no API key {ident!r}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _key(row)

    def authenticate(self, key: str) -> ApiKey | None:
        """The live key ``key`` is, or None (unknown, malformed, wrong secret or revoked)."""
        prefix = _parse(key)
        if prefix is None:
            return None
        with connected(self.engine) as conn:
            found = fetch(conn, _BY_PREFIX, {"prefix": prefix})
        if not found:
            return None
        ident, name, key_hash, scopes, created_at, revoked_at = found[0]
        if not hmac.compare_digest(key_hash, _hash(key)) or revoked_at is not None:
            return None
        return ApiKey(
            id=ident, name=name, prefix=prefix, scopes=tuple(s for s in scopes.split(",") if s),
            created_at=stored_time(created_at), revoked_at=None,
        )  # fmt: skip
