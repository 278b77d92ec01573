#!/bin/sh
# Debian's Chromium for the caregiver page's browser test (tests/integration/test_care_page.py,
# driven by Playwright without a browser download). `make test` runs this first: it does
# nothing when a Chromium is already there (or KITH_CHROMIUM names one), installs Debian's
# `chromium` package when it can (as root, or through passwordless sudo), and otherwise stops
# with the one command to run.
set -eu

if [ -n "${KITH_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 \
    || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" = 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    echo "make test: the caregiver page's browser test needs Chromium. Install Debian's package" >&2
    echo "  (sudo apt-get install chromium), or set KITH_CHROMIUM to a Chromium/Chrome binary." >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "make test: no apt-get here; install Chromium and/or set KITH_CHROMIUM to its binary." >&2
    exit 1
fi

echo "make test: installing Debian's chromium for the browser test (apt-get)" >&2
$as_root apt-get update -qq
DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "make test: chromium did not install" >&2; exit 1; }
