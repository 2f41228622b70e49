#!/usr/bin/env bash
# Chromium (Debian package) for the console's browser test (tests/console/test_browser.py),
# driven by Playwright (pinned in requirements.txt) through its executable_path: Playwright's
# own browser download is not used. A CJK font (fonts-wqy-microhei) comes with it, so the
# industry categories' Chinese names show in the screenshots.
#
#   scripts/chromium.sh install     # apt-get install chromium if it is missing (root only)
#   scripts/chromium.sh path        # print the browser's path (exit 1 if there is none)
#   scripts/chromium.sh version     # print its version line
set -euo pipefail

find_chromium() {
    local c
    for c in "${CHROMIUM:-}" chromium chromium-browser google-chrome; do
        [ -n "$c" ] || continue
        if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
    done
    test -x /usr/bin/chromium && echo /usr/bin/chromium || true
}

have_cjk_font() {
    command -v fc-list >/dev/null 2>&1 && fc-list :lang=zh 2>/dev/null | grep -q .
}

install() {
    if [ -n "$(find_chromium)" ] && have_cjk_font; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "chromium.sh: chromium is not installed and this is not root: sudo apt-get install chromium" >&2
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "chromium.sh: chromium is not installed and there is no apt-get: install Chromium and set CHROMIUM=/path" >&2
        return 1
    fi
    echo "chromium.sh: installing chromium (Debian package)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends chromium fonts-wqy-microhei >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends chromium fonts-wqy-microhei >/dev/null
    }
    test -n "$(find_chromium)"
}

path() {
    local c
    c=$(find_chromium)
    if [ -z "$c" ]; then
        echo "chromium.sh: chromium is not installed (scripts/chromium.sh install)" >&2
        return 1
    fi
    echo "$c"
}

case "${1:-}" in
    install) install ;;
    path) path ;;
    version) "$(path)" --version 2>/dev/null | head -1 ;;
    *) echo "usage: chromium.sh install | path | version" >&2; exit 2 ;;
esac
