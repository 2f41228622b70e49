#!/usr/bin/env bash
# A private Mosquitto broker for the gateway's tests and demos: loopback only, its own config,
# persistence and log under a directory you give, on a free port.
#
#   scripts/broker.sh install            # apt-get install mosquitto if it is missing
#   scripts/broker.sh start DIR [PORT]   # start (installs first if needed); prints the port
#   scripts/broker.sh stop DIR           # stop the instance whose pid file is in DIR
#
# Clients must authenticate (allow_anonymous false) and are confined by DIR/acl (see
# docs/gateway.md, "MQTT users and ACLs"). At the first start in DIR a random password is made
# for each user and written to DIR/users/<user> (mode 600; nothing is stored in the repository);
# DIR/passwd holds their hashes (mosquitto_passwd). Users: gateway, operator, fleet (the
# simulator, a concentrator publishing for many detectors) and one per device id listed in
# $BROKER_DETECTORS (user name = device id). Restarts in the same DIR keep the passwords.
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

find_passwd() {
    command -v mosquitto_passwd 2>/dev/null || { test -x /usr/bin/mosquitto_passwd && echo /usr/bin/mosquitto_passwd; } || true
}

# DIR/users/<user> (a random password, created once) and DIR/passwd (their hashes).
make_users() {
    local dir=$1 u mp
    mp=$(find_passwd)
    if [ -z "$mp" ]; then
        echo "broker.sh: mosquitto_passwd not found (Debian package mosquitto)" >&2
        return 1
    fi
    mkdir -p "$dir/users"
    chmod 700 "$dir/users"
    (
        umask 077
        : > "$dir/passwd.tmp"
        for u in gateway operator fleet ${BROKER_DETECTORS:-}; do
            case $u in *[!A-Za-z0-9_.-]*) echo "broker.sh: bad user name $u" >&2; exit 1 ;; esac
            [ -s "$dir/users/$u" ] || python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$dir/users/$u"
            printf '%s:%s\n' "$u" "$(cat "$dir/users/$u")" >> "$dir/passwd.tmp"
        done
        "$mp" -U "$dir/passwd.tmp"
        mv "$dir/passwd.tmp" "$dir/passwd"
    )
}

# The ACL (any topic prefix: the first level is +). Detectors are users named by device id.
write_acl() {
    cat > "$1/acl" <<'ACL'
# Written by scripts/broker.sh. Pattern lines apply to every user: a detector (user name =
# device id) publishes only its own uplink and reads only its own downlink.
pattern write +/up/%u
pattern read +/down/%u

# The gateway: reads uplinks and command requests, publishes downlinks, decoded JSON, state
# and its status (last will).
user gateway
topic read +/up/+
topic read +/cmd/+/+
topic write +/down/+
topic write +/json/#
topic write +/state/+
topic readwrite +/gw/+/status

# The fleet simulator: one client speaking for every detector (a concentrator).
user fleet
topic write +/up/+
topic read +/down/+

# An operator: requests commands only under its own user name (the gateway records that name),
# reads what the gateway publishes, publishes the console's escalations (docs/console.md).
# Add one such block per operator account.
user operator
topic write +/cmd/operator/+
topic write +/case/+
topic read +/json/#
topic read +/state/+
topic read +/gw/+/status
ACL
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
    make_users "$dir"
    write_acl "$dir"
    cat > "$dir/mosquitto.conf" <<CONF
# Written by scripts/broker.sh: a private, loopback-only test broker.
listener $port 127.0.0.1
allow_anonymous false
password_file $dir/passwd
acl_file $dir/acl
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
