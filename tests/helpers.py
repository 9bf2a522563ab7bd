"""Test helpers: run the real ``amigate`` command, find free ports, wait for servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

from amigate.storage import Store, make_engine, upgrade

AMIGATE = [sys.executable, "-m", "amigate.cli"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_amigate(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``amigate ARGS`` to completion and capture its output."""
    return subprocess.run(
        [*AMIGATE, *args], env={**os.environ, **(env or {})}, cwd=cwd, capture_output=True,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip


@contextmanager
def serving(
    *args: str, port: int, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Iterator[httpx.Client]:
    """Start ``amigate ARGS`` in the background and yield a client once /healthz answers."""
    proc = subprocess.Popen(
        [*AMIGATE, *args], env={**os.environ, **(env or {})}, cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                output = proc.stdout.read() if proc.stdout else ""
                raise AssertionError(f"amigate exited early:\n{output}")
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError("amigate did not start serving within 30 s") from None
                time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=10) as client:
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def impatient_sqlite_store(path: Path) -> Store:
    """A migrated SQLite store whose connections wait 50 ms for a lock, not 30 s (tests
    that hold the database locked to play an outage)."""
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)

    @event.listens_for(engine, "connect")
    def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=50")

    engine.dispose()  # the connection made by upgrade had the long timeout
    return Store(engine)
