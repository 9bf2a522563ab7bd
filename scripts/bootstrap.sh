#!/usr/bin/env bash
# Create ./.venv and install amigate into it (with the test tools when asked).
#   scripts/bootstrap.sh          runtime only
#   scripts/bootstrap.sh test     + test, lint and type-check tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    if ! "$PY" -m venv .venv 2>/dev/null; then
        # Debian/Ubuntu ship venv separately.
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        rm -rf .venv
        "$PY" -m venv .venv
    fi
fi
pip_() {  # quiet pip; drop its notes about unreachable local index folders
    .venv/bin/python -m pip -q --disable-pip-version-check "$@" 2> >(grep -v "^WARNING: Location 'file:" >&2)
}
pip_ install --upgrade pip
extra=""
[ "${1:-}" = test ] && extra="[test]"
# A regular (not editable) install: the tests then run against exactly what a
# user's `pip install` gets, data folders included.
pip_ install ".${extra}"
