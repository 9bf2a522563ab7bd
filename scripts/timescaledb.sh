#!/usr/bin/env bash
# Provision and run a local TimescaleDB (PostgreSQL 17 + Debian's Apache-licensed
# timescaledb package) without Docker: debootstrap a minimal Debian trixie into a
# folder outside the repository, then run the server from it on 127.0.0.1:5433.
#
#   scripts/timescaledb.sh start    provision if needed, start, create database "amigate"
#   scripts/timescaledb.sh stop     stop the server
#   scripts/timescaledb.sh status   say whether it runs
#   scripts/timescaledb.sh url      print the database URL to use
#
# Needs root (debootstrap and chroot). The root folder is reused when present.
set -euo pipefail

ROOT="${AMIGATE_TSDB_ROOT:-/var/lib/amigate-timescaledb}"
PORT="${AMIGATE_TSDB_PORT:-5433}"
SUITE="trixie"
PGBIN="/usr/lib/postgresql/17/bin"
PGDATA="/var/lib/postgresql/data"
URL="postgresql+psycopg://postgres@127.0.0.1:${PORT}/amigate"

log() { printf 'timescaledb: %s\n' "$*" >&2; }

in_root() {  # run a command inside the chroot as the postgres user
    chroot "$ROOT" /usr/sbin/runuser -u postgres -- "$@"
}

provision() {
    if [ -x "$ROOT$PGBIN/postgres" ] && [ -f "$ROOT/usr/lib/postgresql/17/lib/timescaledb.so" ]; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || { log "provisioning needs root (debootstrap, chroot)"; exit 1; }
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    mirror="$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/* *$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)"
    [ -n "$mirror" ] || mirror="$(awk '/^deb .*debian/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
    [ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
    log "debootstrap $SUITE into $ROOT from $mirror (about a minute)"
    rm -rf "$ROOT.partial"
    debootstrap --variant=minbase --include=postgresql-17-timescaledb "$SUITE" "$ROOT.partial" "$mirror" >"/tmp/amigate-debootstrap.log" 2>&1 \
        || { log "debootstrap failed; see /tmp/amigate-debootstrap.log"; tail -n 20 /tmp/amigate-debootstrap.log >&2; exit 1; }
    rm -rf "$ROOT" && mv "$ROOT.partial" "$ROOT"
}

initialise() {
    if [ -f "$ROOT$PGDATA/PG_VERSION" ]; then
        return 0
    fi
    log "initdb in $ROOT$PGDATA"
    mkdir -p "$ROOT$PGDATA"
    chroot "$ROOT" chown -R postgres:postgres /var/lib/postgresql
    in_root "$PGBIN/initdb" -A trust -U postgres -D "$PGDATA" >/dev/null
    cat >>"$ROOT$PGDATA/postgresql.conf" <<CONF
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 100
shared_buffers = 256MB
max_wal_size = 2GB
CONF
}

running() {
    [ -d "$ROOT$PGDATA" ] && in_root "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

start() {
    provision
    initialise
    # /dev and /proc inside the chroot are what PostgreSQL needs (shared memory, random).
    mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
    mountpoint -q "$ROOT/dev" || mount --bind /dev "$ROOT/dev"
    mkdir -p "$ROOT/dev/shm" 2>/dev/null || true
    if ! running; then
        log "starting on 127.0.0.1:$PORT"
        in_root "$PGBIN/pg_ctl" -D "$PGDATA" -l /var/lib/postgresql/server.log -w -t 60 \
            -o "-p $PORT -c unix_socket_directories='' -c listen_addresses=127.0.0.1" start >/dev/null \
            || { tail -n 20 "$ROOT/var/lib/postgresql/server.log" >&2; exit 1; }
    fi
    psql_() { in_root "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -XAtq "$@"; }
    if [ "$(psql_ -d postgres -c "SELECT 1 FROM pg_database WHERE datname='amigate'")" != 1 ]; then
        psql_ -d postgres -c "CREATE DATABASE amigate"
    fi
    psql_ -d amigate -c "CREATE EXTENSION IF NOT EXISTS timescaledb" 2>/dev/null
    log "ready: $URL (timescaledb $(psql_ -d amigate -c "SELECT extversion FROM pg_extension WHERE extname='timescaledb'"), license $(psql_ -d amigate -c "SHOW timescaledb.license"))"
}

stop() {
    if running; then
        in_root "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
        log "stopped"
    fi
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) if running; then echo "running on 127.0.0.1:$PORT"; else echo "stopped"; exit 3; fi ;;
    url) echo "$URL" ;;
    *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
