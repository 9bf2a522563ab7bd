#!/usr/bin/env bash
# The whole test suite on a fresh machine: install, provision and start TimescaleDB
# (scripts/timescaledb.sh), lint, type-check, then every test on both backends.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-1}"   # derandomized Hypothesis profile

echo "== install"
scripts/bootstrap.sh test
echo "== TimescaleDB"
scripts/timescaledb.sh start
echo "== ruff"
.venv/bin/ruff check src tests bench migrations
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
# pytest exits 5 when it collected no test: that is a failure here too.
.venv/bin/python -m pytest -p no:cacheprovider "$@"
