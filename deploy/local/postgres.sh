#!/usr/bin/env bash
# Local throwaway PostgreSQL cluster on loopback for the denial queue
# (`stream-app sink postgres`, `stream-app queue`), no Docker: the server
# binaries of Debian's `postgresql` package (apt-get install postgresql),
# found with `pg_config --bindir` or in /usr/lib/postgresql/*/bin.
#
# Usage: deploy/local/postgres.sh start|stop [--wipe]|status|url
#   start   initdb a cluster in $POSTGRES_STATE_DIR/pg (first time), start it on
#           127.0.0.1:$POSTGRES_PORT (TCP only), create the database; prints the URL
#   stop    stop it (fast shutdown); --wipe also deletes the cluster
#   status  "running (...)" or "stopped" (exit 1)
#   url     the libpq URI for STREAM_APP_DATABASE_URL
#
# Environment:
#   POSTGRES_PORT       default 5432; 0 picks a free port (kept for later starts)
#   POSTGRES_STATE_DIR  default <repo>/.cache/postgres-run
#   POSTGRES_DB         default queue
#   POSTGRES_USER       default stream_app (the cluster's superuser)
#   POSTGRES_PASSWORD   empty (default): trust authentication; set: scram-sha-256
#                       (fixed when the cluster is created: wipe to change)
#   POSTGRES_BINDIR     the server binaries (initdb, pg_ctl, postgres)
#   POSTGRES_RUN_AS     the unprivileged user the server runs as when this script
#                       runs as root (initdb and postgres refuse root); default postgres
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${POSTGRES_STATE_DIR:-$ROOT/.cache/postgres-run}"
[[ "$STATE" = /* ]] || STATE="$PWD/$STATE"
PORTFILE="$STATE/port"
DB="${POSTGRES_DB:-queue}"
USER_NAME="${POSTGRES_USER:-stream_app}"
PASSWORD="${POSTGRES_PASSWORD:-}"
RUN_AS="${POSTGRES_RUN_AS:-postgres}"
HOST=127.0.0.1

# The cluster's directory, owned by the server's user: $STATE/pg, or, when
# this runs as root and $RUN_AS cannot enter $STATE (a repository under
# /root, say), a directory under /tmp named after $STATE.
[[ "${1:-}" != start ]] || mkdir -p "$STATE"
PGDIR="$STATE/pg"
if ((EUID == 0)) && [[ -d "$STATE" ]] && id "$RUN_AS" >/dev/null 2>&1 \
        && ! runuser -u "$RUN_AS" -- test -x "$STATE" 2>/dev/null; then
    PGDIR="${TMPDIR:-/tmp}/stream-app-pg-$(printf '%s' "$STATE" | md5sum | cut -c1-12)"
fi
DATA="$PGDIR/data"
LOGFILE="$PGDIR/postgres.log"

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

find_bindir() {
    local dir
    if [[ -n "${POSTGRES_BINDIR:-}" ]]; then
        printf '%s' "$POSTGRES_BINDIR"; return 0
    fi
    if command -v pg_config >/dev/null; then
        dir=$(pg_config --bindir 2>/dev/null || true)
        if [[ -x "$dir/initdb" ]]; then printf '%s' "$dir"; return 0; fi
    fi
    # Debian keeps the server binaries out of PATH; newest version first.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -V -r); do
        if [[ -x "$dir/initdb" ]]; then printf '%s' "$dir"; return 0; fi
    done
    return 1
}

BINDIR=$(find_bindir) || die "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql (Debian), or set POSTGRES_BINDIR"
for tool in initdb pg_ctl postgres; do
    [[ -x "$BINDIR/$tool" ]] || die "$BINDIR/$tool missing (set POSTGRES_BINDIR)"
done

# initdb and postgres refuse to run as root: as root, run them as $RUN_AS.
as_server() {
    if ((EUID == 0)); then
        runuser -u "$RUN_AS" -- "$@"
    else
        "$@"
    fi
}

lock() {  # lock FD FILE
    command -v flock >/dev/null || return 0
    eval "exec $1>\"\$2\""
    flock "$1"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port() {
    if [[ -s "$PORTFILE" ]]; then cat "$PORTFILE"; return 0; fi
    local p="${POSTGRES_PORT:-5432}"
    [[ "$p" != 0 ]] || p=$(free_port)
    printf '%s' "$p"
}

url() {
    local auth="$USER_NAME"
    [[ -z "$PASSWORD" ]] || auth="$USER_NAME:$PASSWORD"
    printf 'postgresql://%s@%s:%s/%s\n' "$auth" "$HOST" "$(port)" "$DB"
}

running() { [[ -f "$DATA/PG_VERSION" ]] && as_server "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

init_cluster() {
    [[ -f "$DATA/PG_VERSION" ]] && return 0
    mkdir -p "$PGDIR"
    if ((EUID == 0)); then
        id "$RUN_AS" >/dev/null 2>&1 \
            || die "running as root needs an unprivileged user '$RUN_AS' for the server (Debian's postgresql package creates it; or set POSTGRES_RUN_AS)"
        chown "$RUN_AS" "$PGDIR"
        runuser -u "$RUN_AS" -- test -w "$PGDIR" \
            || die "user $RUN_AS cannot enter $PGDIR; choose another POSTGRES_STATE_DIR"
    fi
    chmod 700 "$PGDIR"
    local -a auth=(--auth=trust)
    local pwfile=""
    if [[ -n "$PASSWORD" ]]; then
        pwfile="$PGDIR/.pw"
        (umask 077; printf '%s\n' "$PASSWORD" > "$pwfile")
        ((EUID != 0)) || chown "$RUN_AS" "$pwfile"
        auth=(--auth-local=scram-sha-256 --auth-host=scram-sha-256 --pwfile="$pwfile")
    fi
    local how=trust
    [[ -z "$PASSWORD" ]] || how=scram-sha-256
    log "initdb $DATA (superuser $USER_NAME, $how authentication)"
    local out
    if ! out=$(as_server "$BINDIR/initdb" -D "$DATA" -U "$USER_NAME" -E UTF8 --locale=C.UTF-8 \
            -N "${auth[@]}" 2>&1); then
        rm -f "$pwfile"
        printf '%s\n' "$out" >&2
        die "initdb failed"
    fi
    rm -f "$pwfile"
}

cmd_start() {
    mkdir -p "$STATE"
    lock 9 "$STATE/.lock"
    if running; then
        log "already running on $HOST:$(port)"
        url
        return 0
    fi
    local p
    p=$(port)
    if timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$p" 2>/dev/null; then
        die "port $HOST:$p is already in use (set POSTGRES_PORT, or 0 for a free one)"
    fi
    init_cluster
    printf '%s' "$p" > "$PORTFILE"
    # TCP on loopback only; no Unix socket (its default directory needs root).
    # pg_ctl detaches the server into its own session (Ctrl-C, test teardown).
    if ! as_server "$BINDIR/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 \
            -o "-c listen_addresses=$HOST -p $p -c unix_socket_directories=''" \
            start </dev/null >/dev/null 2>&1 9>&-; then
        tail -n 20 "$LOGFILE" >&2 2>/dev/null || true
        die "postgres did not start (log: $LOGFILE)"
    fi
    local -a env=(PGPASSWORD="$PASSWORD")
    if ! env "${env[@]}" "$BINDIR/psql" -h "$HOST" -p "$p" -U "$USER_NAME" -d postgres -tAq \
            -c "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
        env "${env[@]}" "$BINDIR/createdb" -h "$HOST" -p "$p" -U "$USER_NAME" "$DB"
    fi
    log "postgres up on $HOST:$p, database $DB (data $DATA)"
    url
}

cmd_stop() {
    local wipe=0
    [[ "${1:-}" == --wipe ]] && wipe=1
    [[ -d "$STATE" ]] || { log "not running"; return 0; }
    lock 9 "$STATE/.lock"
    if running; then
        as_server "$BINDIR/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
        log "stopped"
    else
        log "not running"
    fi
    if ((wipe)); then
        # Only what we created, so a mistaken POSTGRES_STATE_DIR=/tmp is harmless.
        rm -rf "$PGDIR" "$PORTFILE" "$STATE/.lock"
        rmdir "$STATE" 2>/dev/null || true
        log "wiped $STATE"
    fi
}

cmd_status() {
    if running; then
        echo "running ($HOST:$(port), database $DB, data $DATA)"
    else
        echo "stopped"
        return 1
    fi
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; }

cmd="${1:-}"
shift || true
case "$cmd" in
    start) cmd_start ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status ;;
    url) url ;;
    -h|--help|help) usage ;;
    *) usage; exit 2 ;;
esac
