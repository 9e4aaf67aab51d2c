#!/bin/sh
# Remove pyscale; leave /etc/headscale, /var/lib/headscale, /var/backups/headscale and the headscale user alone.
# After a --drop-in install this hands the service back to the Go Headscale (deploy/rollback.sh headscale).
#   --root DIR    act on an installed tree in DIR (no systemctl)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=${2%/}; shift 2 ;;
        -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
        *) echo "uninstall.sh: unknown argument $1" >&2; exit 1 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "uninstall.sh: run as root" >&2; exit 1; }
if [ -n "$ROOT" ]; then ROOT_ARGS="--root $ROOT"; else ROOT_ARGS=""; fi
live() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }
# Copy the helper out first: it may live in the venv removed below.
TMP_ROLLBACK=$(mktemp); cp "$HERE/rollback.sh" "$TMP_ROLLBACK"; trap 'rm -f "$TMP_ROLLBACK"' EXIT

if [ -e "$ROOT/usr/local/bin/headscale.pre-pyscale" ]; then
    # shellcheck disable=SC2086
    sh "$TMP_ROLLBACK" headscale $ROOT_ARGS
elif [ -e "$ROOT/etc/systemd/system/pyscale.service" ]; then
    if live; then systemctl disable --now pyscale.service || true
    else systemctl --root="${ROOT:-/}" disable pyscale.service >/dev/null 2>&1 || true; fi
    rm -f "$ROOT/etc/systemd/system/pyscale.service"
    rm -rf "$ROOT/etc/systemd/system/pyscale.service.d"
    live && systemctl daemon-reload
fi
if [ -e "$ROOT/etc/systemd/system/pyscale-backup.timer" ]; then
    if live; then systemctl disable --now pyscale-backup.timer >/dev/null 2>&1 || true
    else systemctl --root="${ROOT:-/}" disable pyscale-backup.timer >/dev/null 2>&1 || true; fi
    rm -f "$ROOT/etc/systemd/system/pyscale-backup.timer" "$ROOT/etc/systemd/system/pyscale-backup.service"
    live && systemctl daemon-reload
fi
[ -L "$ROOT/usr/local/bin/headscale" ] && rm -f "$ROOT/usr/local/bin/headscale"
rm -f "$ROOT/usr/local/bin/pyscale"
rm -rf "$ROOT/opt/pyscale" "$ROOT/opt/pyscale.prev" "$ROOT/opt/pyscale.rolled-back"
echo "uninstall.sh: pyscale removed; /etc/headscale and /var/lib/headscale left as they were"
