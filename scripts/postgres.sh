#!/usr/bin/env bash
# Throw-away PostgreSQL server for the test suite.
#
#   scripts/postgres.sh start   # prints the server URL on stdout (logs go to stderr)
#   scripts/postgres.sh url     # prints the URL of the running server
#   scripts/postgres.sh stop    # stops it and deletes all of its data (safe to call twice)
#
# The cluster lives in a fresh /tmp directory, not in the checkout: the checkout may be
# somewhere the PostgreSQL OS user cannot reach (e.g. /root/...), and nothing in it is
# worth keeping. Only the bookkeeping (.pg/state) is kept under the project.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=$ROOT/.pg
STATE=$STATE_DIR/state
PG_OS_USER=m22bolpg            # only used when we are root: postgres refuses to run as root
PG_ROLE=m22bol                 # database superuser the tests connect as
FIRST_PORT=${M22BOL_PG_PORT:-54329}

log() { echo "postgres.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# Run a command as the OS user that owns the cluster.
as_pg() {
    if [[ $EUID -ne 0 ]]; then
        "$@"
    elif command -v runuser >/dev/null; then
        runuser -u "$PG_OS_USER" -- "$@"
    else
        su -s /bin/bash "$PG_OS_USER" -c "$(printf '%q ' "$@")"
    fi
}

# Directory holding initdb/pg_ctl. pg_config can come from libpq-dev alone, so check
# that the server binaries really are there before trusting it.
find_bindir() {
    local d candidates=()
    if command -v pg_config >/dev/null; then
        candidates+=("$(pg_config --bindir 2>/dev/null || true)")
    fi
    # Newest installed major version first.
    while IFS= read -r d; do candidates+=("$d"); done \
        < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -rV)
    for d in "${candidates[@]}"; do
        if [[ -n $d && -x $d/initdb && -x $d/pg_ctl ]]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

ensure_binaries() {
    if BINDIR=$(find_bindir); then return 0; fi
    [[ $EUID -eq 0 ]] || die "no PostgreSQL server binaries found (install postgresql, e.g. apt-get install postgresql)"
    command -v apt-get >/dev/null || die "no PostgreSQL server binaries found and no apt-get to install them"
    log "installing PostgreSQL with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y postgresql >&2
    BINDIR=$(find_bindir) || die "PostgreSQL installed but initdb/pg_ctl not found"
}

ensure_os_user() {
    [[ $EUID -eq 0 ]] || return 0
    id -u "$PG_OS_USER" >/dev/null 2>&1 && return 0
    # A concurrent run may win the race; only fail if the user still does not exist.
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        "$PG_OS_USER" 2>/dev/null || id -u "$PG_OS_USER" >/dev/null 2>&1 \
        || die "could not create system user $PG_OS_USER"
}

port_in_use() {
    # Anything accepting TCP connections there counts as busy.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

url_for() { echo "postgresql+psycopg://$PG_ROLE@127.0.0.1:$1/postgres"; }

load_state() {
    [[ -f $STATE ]] || return 1
    # shellcheck source=/dev/null
    . "$STATE"
}

cmd_stop() {
    local PGTMP="" PORT="" BINDIR=""
    if ! load_state; then
        log "no server recorded in $STATE; nothing to stop"
        return 0
    fi
    if [[ -n $PGTMP && -f $PGTMP/data/postmaster.pid ]]; then
        # Run from the temp dir so the postgres user never needs access to our cwd.
        (cd "$PGTMP" && as_pg "$BINDIR/pg_ctl" -D "$PGTMP/data" -m fast -w -t 30 stop >&2) \
            || (cd "$PGTMP" && as_pg "$BINDIR/pg_ctl" -D "$PGTMP/data" -m immediate -w stop >&2) \
            || log "pg_ctl stop failed; removing the data directory anyway"
    fi
    # Guard the rm: only ever delete a directory this script created.
    if [[ $PGTMP == /tmp/m22bol-pg.* ]]; then rm -rf -- "$PGTMP"; fi
    rm -f -- "$STATE"
    log "stopped${PORT:+ (port $PORT)}"
}

start_failed() {
    log "start failed; cleaning up"
    if [[ -f $PGTMP/postgres.log ]]; then tail -n 20 "$PGTMP/postgres.log" >&2; fi
    cmd_stop || true
}

cmd_start() {
    if [[ -f $STATE ]]; then
        log "found a server from an earlier run; stopping it first"
        cmd_stop
    fi
    ensure_binaries
    ensure_os_user

    PGTMP=$(mktemp -d /tmp/m22bol-pg.XXXXXX)
    mkdir -p "$STATE_DIR"
    # Written before anything starts so that `stop` can always clean up after us.
    printf 'PGTMP=%q\nBINDIR=%q\nPORT=\n' "$PGTMP" "$BINDIR" > "$STATE"
    # Any failure from here on (set -e or die) must not leave a half-started server behind.
    trap start_failed EXIT

    # mktemp gives 0700 root:root; the cluster owner needs the directory for itself.
    [[ $EUID -ne 0 ]] || chown "$PG_OS_USER:" "$PGTMP"
    cd "$PGTMP"

    as_pg "$BINDIR/initdb" -D "$PGTMP/data" --username="$PG_ROLE" --auth=trust \
        --encoding=UTF8 --locale=C --no-sync >/dev/null
    as_pg mkdir -p "$PGTMP/sock"
    # Durability is pointless for a throw-away cluster; speed is not.
    cat >> "$PGTMP/data/postgresql.conf" <<CONF

# --- m22bol test server ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGTMP/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
CONF

    # Skip ports something already listens on, and retry on a lost bind race.
    local port=$FIRST_PORT last=$((FIRST_PORT + 50))
    while :; do
        ((port <= last)) || die "no free port in $FIRST_PORT..$last"
        if port_in_use "$port"; then
            port=$((port + 1))
            continue
        fi
        # Fresh log per attempt, so the bind check below only sees this attempt.
        if [[ -f $PGTMP/postgres.log ]]; then : > "$PGTMP/postgres.log"; fi
        if as_pg "$BINDIR/pg_ctl" -D "$PGTMP/data" -l "$PGTMP/postgres.log" -w -t 60 \
            -o "-p $port" start >/dev/null; then
            break
        fi
        grep -q "could not bind\|already in use" "$PGTMP/postgres.log" 2>/dev/null \
            || die "PostgreSQL failed to start; the end of its log follows"
        port=$((port + 1))
    done
    trap - EXIT

    printf 'PGTMP=%q\nBINDIR=%q\nPORT=%q\n' "$PGTMP" "$BINDIR" "$port" > "$STATE"
    log "$("$BINDIR/pg_ctl" --version) on 127.0.0.1:$port, data in $PGTMP"
    url_for "$port"
}

cmd_url() {
    local PORT=""
    load_state && [[ -n $PORT ]] || die "not running (use: $0 start)"
    url_for "$PORT"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    url) cmd_url ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
