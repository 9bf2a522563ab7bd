#!/usr/bin/env bash
# Quick start: install amigate into ./.venv and run the service on the embedded
# SQLite default (./amigate.db), API on http://127.0.0.1:8000 (health: /healthz).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/amigate run "$@"
