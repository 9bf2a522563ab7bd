#!/usr/bin/env bash
# Quick start: install amigate into ./.venv, then run the live demo: a simulated
# fleet of 201 meters (DL/T 645 on TCP and a pseudo-terminal, Modbus on TCP, a few
# faulty) read by the service on SQLite (./amigate-demo.db), API on
# http://127.0.0.1:8000 (/healthz, /readyz, /metrics, /docs). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/amigate demo "$@"
