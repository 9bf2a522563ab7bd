"""Where the data folders shipped with amigate live: drivers, simulators, migrations.

In a wheel they sit inside the package (``amigate/_data/...``); in a source checkout
they are the top-level folders of the repository.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_path(name: str) -> Path:
    """Return the path of a shipped data folder or file.

    Args:
        name: ``"drivers"``, ``"simulators"`` or ``"migrations"``.

    Returns:
        The path inside the installed package if present, else in the source checkout.

    Raises:
        FileNotFoundError: neither location has it (a broken installation).
    """
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parents[1] / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"amigate data {name!r} is missing from this installation")
