#!/bin/sh
# Installs what Tally needs from Debian 12 packages, only what is missing.
# Used by scripts/demo.sh and scripts/test.sh; run as root (or with sudo).
set -eu
PKGS="build-essential cmake pkg-config liblmdb-dev libzmq3-dev libmsgpack-dev check \
libjansson-dev libssl-dev libsystemd-dev clang-format python3"
# libcsv: the CSV parser of `tally send --csv`.
PKGS="$PKGS libcsv-dev"
# tally web: libmicrohttpd (its HTTP server); test_web: chromium (the
# headless browser that renders a partner page).
PKGS="$PKGS libmicrohttpd-dev chromium"
# tally statement: cairo and pango (PDF, SVG), the DejaVu fonts it names;
# test_statement reads the PDFs back with pdftotext (poppler-utils).
PKGS="$PKGS libcairo2-dev libpango1.0-dev fonts-dejavu-core poppler-utils"
# prometheus: promtool, which test_metrics checks the scraped text with.
PKGS="$PKGS prometheus"
# test_install: man (renders the man pages), systemd (systemd-analyze verify).
PKGS="$PKGS man-db systemd"
# replication (SPEC section 12): the NATS server (scripts/nats-cluster.sh runs
# three of it, with curl asking them when JetStream is ready) and its C client.
PKGS="$PKGS nats-server libnats-dev curl"
[ "${TALLY_WITH_FUZZ:-0}" = 1 ] && PKGS="$PKGS clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
