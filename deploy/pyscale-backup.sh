#!/bin/sh
# Daily backup (what the runbook's headscale_backup.sh cron job did), run by pyscale-backup.service:
# a new `pyscale backup` directory under DIR, then backups older than KEEP_DAYS are removed.
#   pyscale-backup.sh [DIR] [KEEP_DAYS]      defaults: /var/backups/headscale 14
set -eu
DIR=${1:-/var/backups/headscale}
KEEP_DAYS=${2:-14}
PYSCALE=${PYSCALE:-/opt/pyscale/bin/pyscale}
CONFIG=${PYSCALE_CONFIG:-/etc/headscale/config.yaml}
case "$KEEP_DAYS" in ''|*[!0-9]*) echo "pyscale-backup.sh: KEEP_DAYS must be a number" >&2; exit 1 ;; esac

umask 077
mkdir -p "$DIR"
target="$DIR/pyscale_$(date -u +%Y%m%d_%H%M%S)"
"$PYSCALE" -c "$CONFIG" backup "$target"
"$PYSCALE" -c "$CONFIG" restore --verify-only "$target" >/dev/null
# Only directories this script made (pyscale_YYYYMMDD_HHMMSS with a manifest) are ever pruned.
find "$DIR" -mindepth 1 -maxdepth 1 -type d -name 'pyscale_[0-9]*_[0-9]*' -mtime +"$KEEP_DAYS" \
    -exec test -e '{}/manifest.json' ';' -print -exec rm -rf '{}' +
