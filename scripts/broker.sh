#!/usr/bin/env bash
# A private Mosquitto broker for the gateway's tests and demos: loopback only, its own config,
# persistence and log under a directory you give, on a free port.
#
#   scripts/broker.sh install            # apt-get install mosquitto if it is missing
#   scripts/broker.sh start DIR [PORT]   # start (installs first if needed); prints the port
#   scripts/broker.sh stop DIR           # stop the instance whose pid file is in DIR
#
# MQTT 5 shared subscriptions ($share/GROUP/TOPIC) need Mosquitto >= 1.6; Debian 12 ships 2.0.
# The system service is never touched: this instance runs from DIR and is stopped by pid.
set -euo pipefail

find_mosquitto() {
    command -v mosquitto 2>/dev/null || { test -x /usr/sbin/mosquitto && echo /usr/sbin/mosquitto; } || true
}

install() {
    if [ -n "$(find_mosquitto)" ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "broker.sh: mosquitto is not installed and this is not root: apt-get install mosquitto" >&2
        return 1
    fi
    echo "broker.sh: installing mosquitto (Debian package)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q mosquitto >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        apt-get install -y -q mosquitto >/dev/null
    }
    test -n "$(find_mosquitto)"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1 port=${2:-}
    install
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -z "$port" ]; then
        if [ -f "$dir/port" ]; then port=$(cat "$dir/port"); else port=$(free_port); fi
    fi
    cat > "$dir/mosquitto.conf" <<CONF
# Written by scripts/broker.sh: a private, loopback-only test broker.
listener $port 127.0.0.1
allow_anonymous true
persistence true
persistence_location $dir/
autosave_interval 1
log_dest file $dir/mosquitto.log
log_type error
log_type warning
log_type notice
max_queued_messages 200000
max_inflight_messages 0
user $(id -un)
CONF
    "$(find_mosquitto)" -c "$dir/mosquitto.conf" >>"$dir/stdout.log" 2>&1 &
    echo $! > "$dir/pid"
    echo "$port" > "$dir/port"
    # Ready when the port accepts connections (bounded wait).
    for _ in $(seq 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
            echo "$port"
            return 0
        fi
        if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
            echo "broker.sh: mosquitto exited; see $dir/mosquitto.log" >&2
            tail -5 "$dir/mosquitto.log" "$dir/stdout.log" >&2 || true
            return 1
        fi
        sleep 0.05
    done
    echo "broker.sh: mosquitto did not open port $port within 5 s" >&2
    return 1
}

stop() {
    local dir=$1 pid
    [ -f "$dir/pid" ] || return 0
    pid=$(cat "$dir/pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" || true
    fi
    rm -f "$dir/pid"
}

case "${1:-}" in
    install) install ;;
    start) start "${2:?usage: broker.sh start DIR [PORT]}" "${3:-}" ;;
    stop) stop "${2:?usage: broker.sh stop DIR}" ;;
    *) echo "usage: broker.sh install | start DIR [PORT] | stop DIR" >&2; exit 2 ;;
esac
