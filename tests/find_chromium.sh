#!/usr/bin/env bash
# Find (or install) the Chromium that the browser test drives; print its path on stdout.
#
# `make test` runs this first, so a machine without a browser stops within seconds, not after the
# whole suite. In order: $CHROMIUM; a chromium on PATH; Playwright's own downloaded browser; then,
# where the machine allows it, Debian's package (as root or with password-less sudo) or
# Playwright's download. When none works it exits 2 with the commands that fix it.
# Usage: tests/find_chromium.sh [--early] PYTHON   (the venv's python, for Playwright)
# --early: before the venv exists (`make test` calls it so before setting up): where only
# Playwright's download could provide the browser, succeed if its server answers, and leave the
# download to the call after setup.
set -uo pipefail
EARLY=0
if [ "${1:-}" = --early ]; then EARLY=1; shift; fi
PY="${1:-python3}"
SHOWN_PY="$PY"  # the command the fix names, even before the venv exists
[ -x "$PY" ] || PY=python3
say() { echo "find_chromium: $*" >&2; }

usable() { [ -n "${1:-}" ] && [ -x "$1" ] && [ ! -d "$1" ]; }

on_path() {
    local name
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        if command -v "$name" > /dev/null 2>&1; then command -v "$name"; return 0; fi
    done
    return 1
}

playwright_own() {
    # the browser `playwright install chromium` downloads, if it is there
    "$PY" - <<'EOF' 2>/dev/null
import os, sys
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sys.exit(1)
with sync_playwright() as p:
    path = p.chromium.executable_path
print(path) if path and os.path.isfile(path) else sys.exit(1)
EOF
}

found() { echo "$1"; exit 0; }

if [ -n "${CHROMIUM:-}" ]; then
    usable "$CHROMIUM" && found "$CHROMIUM"
    say "CHROMIUM=$CHROMIUM is not an executable file"
    exit 2
fi
p=$(on_path) && found "$p"
p=$(playwright_own) && found "$p"

if [ "${TRANSFER_NO_INSTALL:-0}" != 1 ]; then
    sudo_cmd=""
    if [ "$(id -u)" != 0 ] && command -v sudo > /dev/null 2>&1 && sudo -n true 2> /dev/null; then
        sudo_cmd="sudo -n"
    fi
    if command -v apt-get > /dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$sudo_cmd" ]; }; then
        say "no Chromium found: installing Debian's chromium package (a minute)"
        if $sudo_cmd apt-get update -qq > /dev/null 2>&1 \
            && $sudo_cmd apt-get install -y -qq chromium > /dev/null 2>&1; then
            p=$(on_path) && found "$p"
        fi
        say "apt-get could not install chromium"
    fi
    if [ "$EARLY" = 1 ] && ! "$PY" -c "import playwright" 2> /dev/null; then
        # no venv yet: is Playwright's download server reachable at all?
        if python3 -c "import urllib.request as u; u.urlopen('https://cdn.playwright.dev/', timeout=5)" \
            > /dev/null 2>&1; then
            say "no Chromium here yet: Playwright will download its own after setting up"
            exit 0
        fi
    elif "$PY" -c "import playwright" 2> /dev/null; then
        say "trying Playwright's own Chromium download"
        if timeout 300 "$PY" -m playwright install chromium > /dev/null 2>&1; then
            p=$(playwright_own) && found "$p"
        fi
        say "Playwright could not download its Chromium (offline?)"
    fi
fi

cat >&2 <<EOF
error: make test needs Chromium for its browser test, and none was found or could be installed.
Fix it with one of:
  sudo apt-get install chromium            (Debian, Ubuntu)
  $SHOWN_PY -m playwright install chromium   (Playwright's own browser, a download)
  make test CHROMIUM=/path/to/chrome       (a Chrome or Chromium you already have)
EOF
exit 2
