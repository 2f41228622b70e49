#!/usr/bin/env bash
# tshark (Wireshark's command-line dissector engine) for the EFD dissector's test
# (tests/protocol/test_wireshark.py) and for reading captures with tools/wireshark/efd.lua.
#
#   scripts/tshark.sh install     # apt-get install tshark if it is missing (root only)
#   scripts/tshark.sh version     # print the installed tshark's version line
#
# Debian 12 ships tshark 4.0 with Lua 5.2. The package asks whether non-root users may
# capture (wireshark-common/install-setuid); it is preseeded to "false" so the install never
# stops at a prompt and adds no setuid binary: reading capture files needs no privilege.
set -euo pipefail

find_tshark() {
    command -v tshark 2>/dev/null || { test -x /usr/bin/tshark && echo /usr/bin/tshark; } || true
}

install() {
    if [ -n "$(find_tshark)" ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "tshark.sh: tshark is not installed and this is not root: sudo apt-get install tshark" >&2
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "tshark.sh: tshark is not installed and there is no apt-get: install Wireshark's tshark (>= 3.6)" >&2
        return 1
    fi
    echo "tshark.sh: installing tshark (Debian package)" >&2
    export DEBIAN_FRONTEND=noninteractive
    if command -v debconf-set-selections >/dev/null 2>&1; then
        echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    fi
    apt-get install -y -q --no-install-recommends tshark >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends tshark >/dev/null
    }
    test -n "$(find_tshark)"
}

version() {
    local t
    t=$(find_tshark)
    if [ -z "$t" ]; then
        echo "tshark.sh: tshark is not installed (scripts/tshark.sh install)" >&2
        return 1
    fi
    "$t" --version 2>/dev/null | head -1
}

case "${1:-}" in
    install) install ;;
    version) version ;;
    *) echo "usage: tshark.sh install | version" >&2; exit 2 ;;
esac
