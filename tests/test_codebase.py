"""The layering rules of ARCHITECTURE.md, checked on the source, and what a wheel ships."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "amigate"
STDLIB = sys.stdlib_module_names


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(folder: str = "") -> list[Path]:
    return sorted((SRC / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("codecs"), ids=lambda p: p.name)
def test_codecs_import_only_the_standard_library_and_errors(path: Path) -> None:
    ours = ("amigate.codecs", "amigate.errors")
    foreign = {
        name for name in _imports(path)
        if name.split(".")[0] not in STDLIB and not name.startswith(ours)
    }  # fmt: skip
    assert foreign == set()


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("serial", ("transports",)),
        ("serial_asyncio_fast", ("transports",)),
        ("pymodbus", ("drivers", "simulators")),
        ("sqlalchemy", ("storage",)),
        ("alembic", ("storage",)),
        ("fastapi", ("api",)),
    ],
)
def test_foreign_libraries_stay_in_their_layer(package: str, allowed: tuple[str, ...]) -> None:
    offenders = [
        str(path.relative_to(SRC))
        for path in _modules()
        if any(n == package or n.startswith(package + ".") for n in _imports(path))
        and path.relative_to(SRC).parts[0] not in allowed
    ]
    # The composition root (cli, api) wires storage together; it may touch its types.
    offenders = [o for o in offenders if not (package == "sqlalchemy" and o.startswith("api/"))]
    assert offenders == []


def test_only_errors_py_defines_exceptions_from_exception() -> None:
    offenders = [
        str(path.relative_to(SRC))
        for path in _modules()
        if path.name != "errors.py" and "(Exception)" in path.read_text()
    ]
    assert offenders == []


def test_settings_are_built_only_in_config() -> None:
    offenders = [
        str(path.relative_to(SRC))
        for path in _modules()
        if path.name != "config.py" and "Settings(" in path.read_text()
    ]
    assert offenders == []


def test_wheel_ships_the_data_folders(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("amigate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("drivers", "simulators"):
        source = {p.name for p in (ROOT / shipped).glob("*.toml")}
        assert source, shipped
        packed = {Path(n).name for n in names if n.startswith(f"amigate/_data/{shipped}/")}
        assert source <= packed
    migrations = {p.name for p in (ROOT / "migrations" / "versions").glob("*.py")}
    versions = "amigate/_data/migrations/versions/"
    assert {Path(n).name for n in names if n.startswith(versions)} >= migrations
    assert "amigate/_data/migrations/env.py" in names
    assert any(n.endswith("entry_points.txt") for n in names)


#: Tables of data, exempt from the size limit.
DATA_TABLES = {"codecs/dlt645_catalogue.py"}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_modules_stay_small(path: Path) -> None:
    if str(path.relative_to(SRC)) in DATA_TABLES:
        return
    assert len(path.read_text().splitlines()) <= 500
