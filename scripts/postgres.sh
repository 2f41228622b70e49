#!/usr/bin/env bash
# A private PostgreSQL server for the gateway's tests, benchmarks and demos: loopback only, its
# own cluster (data, config, log) under a directory you give, on a free port.
#
#   scripts/postgres.sh install            # apt-get install postgresql if it is missing
#   scripts/postgres.sh start DIR [PORT]   # start (installs and initdb first if needed); prints the port
#   scripts/postgres.sh url DIR            # the gateway's --db URL (with the password) for DIR
#   scripts/postgres.sh stop DIR [immediate]  # stop the instance whose pid file is in DIR
#
# Environment: POSTGRES_FSYNC=off starts the server without fsync (the tests: their data is
# thrown away, and fsync on a shared CI disk makes each CREATE DATABASE take seconds; never for
# data you keep). `stop DIR immediate` skips the shutdown checkpoint (the tests' teardown).
#
# At the first start in DIR a random password is made for the superuser `efd` and written to
# DIR/password (mode 600; nothing is stored in the repository), the cluster is made in DIR/data
# (initdb, scram-sha-256 over TCP, no trust anywhere) and a database `efd` is created. Restarts
# in the same DIR keep the data, the port and the password.
#
# PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` system user
# the Debian package creates, so DIR must be reachable by that user (its parent directories
# need o+x; the tests use a directory under /tmp). Not root: it runs as you.
# The system service (if any) is never touched: this instance runs from DIR and is stopped by
# its pid (DIR/pid). Unix sockets are off: clients connect over TCP to 127.0.0.1 only.
set -euo pipefail

SUPERUSER=efd
DBNAME=efd

# The newest installed server's bin directory (Debian: /usr/lib/postgresql/<major>/bin).
find_bin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; fi
}

install() {
    if [ -n "$(find_bin)" ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "postgres.sh: PostgreSQL is not installed and this is not root: apt-get install postgresql" >&2
        return 1
    fi
    echo "postgres.sh: installing postgresql (Debian package)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d 101: the package's own cluster service is not started by the install (we
    # never use it; a container may have no init anyway).
    local prc=/usr/sbin/policy-rc.d made=
    if [ ! -e $prc ]; then printf '#!/bin/sh\nexit 101\n' > $prc; chmod 755 $prc; made=1; fi
    apt-get install -y -q postgresql >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        apt-get install -y -q postgresql >/dev/null
    } || { [ -n "$made" ] && rm -f $prc; return 1; }
    [ -n "$made" ] && rm -f $prc
    test -n "$(find_bin)"
}

# Run a command as the cluster's owner: `postgres` when we are root, else ourselves.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

init_cluster() {
    local dir=$1 bin=$2 pwfile
    [ -s "$dir/password" ] || (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$dir/password")
    [ -f "$dir/data/PG_VERSION" ] && return 0
    mkdir -p "$dir/data"
    chmod 700 "$dir/data"
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || { echo "postgres.sh: no 'postgres' system user (Debian package postgresql)" >&2; return 1; }
        chmod 711 "$dir"
        chown postgres: "$dir/data"
        if ! runuser -u postgres -- test -x "$dir"; then
            echo "postgres.sh: user postgres cannot reach $dir (a parent directory lacks o+x); use a directory under /tmp" >&2
            return 1
        fi
    fi
    # initdb reads the password from a file only the owner can read, removed right after.
    pwfile="$dir/initdb.pw"
    (umask 077; cp "$dir/password" "$pwfile")
    [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
    as_owner "$bin/initdb" -D "$dir/data" -U "$SUPERUSER" --pwfile="$pwfile" \
        --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
        rm -f "$pwfile"
        echo "postgres.sh: initdb failed; see $dir/initdb.log" >&2
        tail -5 "$dir/initdb.log" >&2
        return 1
    }
    rm -f "$pwfile"
}

start() {
    local dir=$1 port=${2:-} bin
    install
    bin=$(find_bin)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        cat "$dir/port"
        return 0
    fi
    if [ -z "$port" ]; then
        if [ -f "$dir/port" ]; then port=$(cat "$dir/port"); else port=$(free_port); fi
    fi
    init_cluster "$dir" "$bin"
    # Loopback TCP only, no unix socket (its directory would need to be writable by the owner
    # and it is not needed). The log goes to DIR/data/postgres.log (the owner writes it).
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/postgres.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories= -c max_connections=200 -c fsync=${POSTGRES_FSYNC:-on}" \
        >"$dir/pg_ctl.log" 2>&1 || {
        echo "postgres.sh: postgres did not start; see $dir/data/postgres.log" >&2
        tail -5 "$dir/data/postgres.log" "$dir/pg_ctl.log" >&2 || true
        return 1
    }
    head -1 "$dir/data/postmaster.pid" > "$dir/pid"
    echo "$port" > "$dir/port"
    # The application database, once (it survives restarts with the cluster).
    if ! PGPASSWORD=$(cat "$dir/password") "$bin/psql" -h 127.0.0.1 -p "$port" -U "$SUPERUSER" \
        -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'" | grep -q 1; then
        PGPASSWORD=$(cat "$dir/password") "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$SUPERUSER" "$DBNAME"
    fi
    echo "$port"
}

url() {
    local dir=$1
    dir=$(cd "$dir" && pwd)
    [ -s "$dir/port" ] && [ -s "$dir/password" ] || { echo "postgres.sh: no server was started in $dir" >&2; return 1; }
    echo "postgresql://$SUPERUSER:$(cat "$dir/password")@127.0.0.1:$(cat "$dir/port")/$DBNAME"
}

stop() {
    local dir=$1 mode=${2:-fast} pid sig=INT
    [ -f "$dir/pid" ] || return 0
    pid=$(cat "$dir/pid")
    # INT: fast shutdown (roll back open transactions, checkpoint, exit); QUIT: immediate (no
    # checkpoint: crash recovery at the next start).
    [ "$mode" = immediate ] && sig=QUIT
    if kill -0 "$pid" 2>/dev/null; then
        kill -$sig "$pid"
        for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        if kill -0 "$pid" 2>/dev/null; then
            kill -QUIT "$pid" || true
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        fi
    fi
    rm -f "$dir/pid"
}

case "${1:-}" in
    install) install ;;
    start) start "${2:?usage: postgres.sh start DIR [PORT]}" "${3:-}" ;;
    url) url "${2:?usage: postgres.sh url DIR}" ;;
    stop) stop "${2:?usage: postgres.sh stop DIR [immediate]}" "${3:-fast}" ;;
    *) echo "usage: postgres.sh install | start DIR [PORT] | url DIR | stop DIR [immediate]" >&2; exit 2 ;;
esac
