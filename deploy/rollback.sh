#!/bin/sh
# Roll back what install.sh did, keeping the database and config in place.
#
#   deploy/rollback.sh pyscale     back to the previous pyscale (/opt/pyscale.prev, kept by install.sh)
#   deploy/rollback.sh headscale   back to the Go Headscale a --drop-in install replaced: its binary
#                                  (/usr/local/bin/headscale.pre-pyscale) and its unit; same database
#   --root DIR                     act on an installed tree in DIR (no systemctl stop/start)
set -eu

ROOT=""
TARGET=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=${2%/}; shift 2 ;;
        pyscale|headscale) TARGET=$1; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "rollback.sh: unknown argument $1" >&2; exit 1 ;;
    esac
done
die() { echo "rollback.sh: $*" >&2; exit 1; }
say() { echo "rollback.sh: $*"; }
[ -n "$TARGET" ] || die "say what to roll back to: pyscale or headscale"
[ "$(id -u)" = 0 ] || die "run as root"

VENV=/opt/pyscale
BIN=/usr/local/bin
UNIT_DIR=/etc/systemd/system
KEEP=/var/backups/pyscale
if [ -e "$ROOT$UNIT_DIR/headscale.service" ] && grep -q pyscale "$ROOT$UNIT_DIR/headscale.service"; then
    UNIT=headscale.service
else
    UNIT=pyscale.service
fi
live() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

if [ "$TARGET" = pyscale ]; then
    [ -x "$ROOT$VENV.prev/bin/pyscale" ] || die "no previous pyscale at $VENV.prev"
    live && systemctl stop "$UNIT"
    rm -rf "$ROOT$VENV.rolled-back"
    mv "$ROOT$VENV" "$ROOT$VENV.rolled-back"
    mv "$ROOT$VENV.prev" "$ROOT$VENV"
    say "$VENV is the previous version again; the one rolled back is in $VENV.rolled-back"
    live && systemctl start "$UNIT" && say "$UNIT is $(systemctl is-active "$UNIT")"
    exit 0
fi

[ -e "$ROOT$BIN/headscale.pre-pyscale" ] || die "no Headscale binary kept at $BIN/headscale.pre-pyscale (not a --drop-in install?)"
live && systemctl stop "$UNIT"
rm -f "$ROOT$BIN/headscale"
mv "$ROOT$BIN/headscale.pre-pyscale" "$ROOT$BIN/headscale"
if [ -e "$ROOT$KEEP/headscale.service" ]; then
    cp -p "$ROOT$KEEP/headscale.service" "$ROOT$UNIT_DIR/headscale.service"
    rm -f "$ROOT$KEEP/headscale.service"
else
    die "no Headscale unit kept at $KEEP/headscale.service: write yours back to $UNIT_DIR/headscale.service"
fi
rm -rf "$ROOT$UNIT_DIR/headscale.service.d/10-low-ports.conf"
rmdir "$ROOT$UNIT_DIR/headscale.service.d" 2>/dev/null || true
say "Headscale's binary and unit are back; database and config were left as they are"
if live; then
    systemctl daemon-reload
    systemctl start headscale.service
    say "headscale.service is $(systemctl is-active headscale.service)"
fi
