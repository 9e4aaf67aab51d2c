#!/bin/sh
# Install (or upgrade) pyscale as a native, hardened systemd service. Idempotent: run it again to
# upgrade; the previous venv is kept as /opt/pyscale.prev for `deploy/rollback.sh pyscale`.
#
#   deploy/install.sh                 fresh install: unit pyscale.service
#   deploy/install.sh --drop-in       take over an existing Headscale install in place: the unit stays
#                                     headscale.service, same config, same database, `headscale` runs
#                                     pyscale, the Go binary is kept as /usr/local/bin/headscale.pre-pyscale
#   --root DIR      install into DIR instead of / (no systemctl start; for tests and image builds)
#   --python PY     interpreter for the venv (default python3; not under /root or /home: ProtectHome hides it)
#   --deps-from DIR offline: use the dependencies already installed in site-packages DIR (a .pth file)
#                   and copy pyscale's packages in, instead of pip install from the index
#   --pip-args "A"  extra pip arguments (e.g. "--no-index --find-links /srv/wheels")
#   --no-start      install and enable, but do not start or restart
#   --backup-timer  also enable pyscale-backup.timer (daily backup into /var/backups/headscale, 14 days kept);
#                   its units are always installed, enabled only on request (you may have a cron job)
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(dirname "$HERE")
ROOT=""
DROP_IN=0
PYTHON=python3
DEPS_FROM=""
PIP_ARGS=""
START=1
BACKUP_TIMER=0
USER_NAME=headscale

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=${2%/}; shift 2 ;;
        --drop-in) DROP_IN=1; shift ;;
        --python) PYTHON=$2; shift 2 ;;
        --deps-from) DEPS_FROM=$2; shift 2 ;;
        --pip-args) PIP_ARGS=$2; shift 2 ;;
        --no-start) START=0; shift ;;
        --backup-timer) BACKUP_TIMER=1; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "run as root"
# The venv's interpreter must stay visible to the service: ProtectHome=true hides /root and /home.
PY_REAL=$(readlink -f "$(command -v "$PYTHON" || echo "$PYTHON")")
case "$PY_REAL" in
    /root/*|/home/*) die "$PYTHON is $PY_REAL, hidden from the service by ProtectHome=true; use e.g. /usr/bin/python3" ;;
esac
"$PY_REAL" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PY_REAL: Python 3.11+ needed"

VENV=/opt/pyscale
CONF_DIR=/etc/headscale
DATA_DIR=/var/lib/headscale
UNIT_DIR=/etc/systemd/system
BIN=/usr/local/bin
KEEP=/var/backups/pyscale        # what the drop-in replaced, for rollback
BACKUP_DIR=/var/backups/headscale   # pyscale-backup.timer's backups
if [ "$DROP_IN" = 1 ]; then UNIT=headscale.service; else UNIT=pyscale.service; fi

# ---- 1. the system user (the runbook's: system, own group, no shell, home = data dir) ----------
if ! grep -q "^$USER_NAME:" "$ROOT/etc/passwd" 2>/dev/null; then
    if [ -n "$ROOT" ]; then PREFIX="--prefix $ROOT"; else PREFIX=""; fi
    # shellcheck disable=SC2086
    useradd $PREFIX --system --user-group --home-dir "$DATA_DIR" --shell /usr/sbin/nologin "$USER_NAME"
    say "created system user $USER_NAME"
fi
UID_NUM=$(awk -F: -v u="$USER_NAME" '$1 == u { print $3 }' "$ROOT/etc/passwd")
GID_NUM=$(awk -F: -v u="$USER_NAME" '$1 == u { print $4 }' "$ROOT/etc/passwd")

# ---- 2. config and data directories with the runbook's permissions --------------------------------
for d in "$CONF_DIR" "$DATA_DIR"; do
    mkdir -p "$ROOT$d"
    chown -R "$UID_NUM:$GID_NUM" "$ROOT$d"
    chmod 750 "$ROOT$d"
done
if [ ! -e "$ROOT$CONF_DIR/config.yaml" ]; then
    install -m 640 -o "$UID_NUM" -g "$GID_NUM" "$HERE/config.yaml" "$ROOT$CONF_DIR/config.yaml"
    say "wrote $CONF_DIR/config.yaml from the template: set server_url before exposing it"
fi
if [ -e "$ROOT$DATA_DIR/db.sqlite" ]; then chmod 600 "$ROOT$DATA_DIR/db.sqlite"; fi
install -d -m 700 -o "$UID_NUM" -g "$GID_NUM" "$ROOT$BACKUP_DIR"

# ---- 3. the venv under /opt (never under /root: ProtectHome=true hides it from the service) --------
if [ -x "$ROOT$VENV/bin/pyscale" ]; then
    rm -rf "$ROOT$VENV.prev"
    cp -a "$ROOT$VENV" "$ROOT$VENV.prev"
    say "kept the installed version as $VENV.prev (deploy/rollback.sh pyscale)"
fi
if [ ! -x "$ROOT$VENV/bin/python" ]; then
    if [ -n "$DEPS_FROM" ]; then "$PY_REAL" -m venv --without-pip "$ROOT$VENV"
    else "$PY_REAL" -m venv "$ROOT$VENV"; fi
fi
SITE=$("$ROOT$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
if [ -n "$DEPS_FROM" ]; then
    [ -d "$DEPS_FROM" ] || die "--deps-from $DEPS_FROM is not a directory"
    # Copy (not reference) pyscale's runtime dependency closure: the service runs with PrivateTmp and
    # ProtectHome, so a site-packages under /tmp or /home would be invisible to it.
    "$PY_REAL" - "$DEPS_FROM" "$SITE" "$SRC/pyproject.toml" <<'PYEOF'
import re, shutil, sys
from importlib import metadata
from pathlib import Path
src, dst, pyproject = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]).read_text()
deps = re.search(r"^dependencies = \[(.*?)\]", pyproject, re.S | re.M).group(1)
todo = [re.split(r"[<>=!~;\[ ]", d.strip().strip('",'))[0] for d in deps.splitlines() if d.strip()]
dists = {metadata.Distribution.at(p).metadata["Name"].lower().replace("_", "-"): metadata.Distribution.at(p)
         for p in src.glob("*.dist-info")}
seen = set()
while todo:
    name = todo.pop().lower().replace("_", "-")
    if name in seen or name not in dists:
        continue
    seen.add(name)
    dist = dists[name]
    for f in dist.files or []:
        path = Path(dist.locate_file(f))
        if path.is_file() and src in path.parents and "__pycache__" not in path.parts:
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    for req in dist.requires or []:
        if "extra ==" not in req:
            todo.append(re.split(r"[<>=!~;\[ (]", req.strip())[0])
print(f"copied {len(seen)} runtime dependencies: {', '.join(sorted(seen))}")
PYEOF
    rm -f "$SITE/pyscale-deps.pth"
    rm -rf "$SITE/pyscale" "$SITE/derp"
    cp -r "$SRC/pyscale" "$SRC/derp" "$SITE/"
    find "$SITE/pyscale" "$SITE/derp" -name __pycache__ -prune -exec rm -rf {} +
    printf '#!%s/bin/python\nimport sys\nfrom pyscale.cli.main import main\nsys.exit(main())\n' "$VENV" \
        > "$ROOT$VENV/bin/pyscale"
    chmod 755 "$ROOT$VENV/bin/pyscale"
else
    # shellcheck disable=SC2086
    "$ROOT$VENV/bin/python" -m pip install --quiet --upgrade $PIP_ARGS "$SRC"
fi
# venv and pip wrote $ROOT into the #! lines and activate scripts; inside the root they live at $VENV.
if [ -n "$ROOT" ]; then
    for f in "$ROOT$VENV"/bin/*; do
        if [ -f "$f" ] && [ ! -L "$f" ] && grep -qI "$ROOT$VENV" "$f"; then sed -i "s|$ROOT$VENV|$VENV|g" "$f"; fi
    done
fi
"$ROOT$VENV/bin/python" -m compileall -q "$SITE/pyscale" "$SITE/derp" >/dev/null || true
mkdir -p "$ROOT$VENV/share/deploy"
cp "$HERE/README.md" "$HERE/pyscale.service" "$ROOT$VENV/share/deploy/"
cp "$HERE"/*.sh "$ROOT$VENV/share/deploy/"

# ---- 4. commands: pyscale, and in drop-in mode headscale (the Go binary kept for rollback) ---------
mkdir -p "$ROOT$BIN"
ln -sfn "$VENV/bin/pyscale" "$ROOT$BIN/pyscale"
if [ "$DROP_IN" = 1 ]; then
    if [ -e "$ROOT$BIN/headscale" ] && [ ! -L "$ROOT$BIN/headscale" ]; then
        mv "$ROOT$BIN/headscale" "$ROOT$BIN/headscale.pre-pyscale"
        say "kept the Headscale binary as $BIN/headscale.pre-pyscale"
    fi
    ln -sfn "$VENV/bin/pyscale" "$ROOT$BIN/headscale"
fi

# ---- 5. the unit (plus CAP_NET_BIND_SERVICE only when a port below 1024 is configured) --------------
mkdir -p "$ROOT$UNIT_DIR" "$ROOT$KEEP"
if [ "$DROP_IN" = 1 ] && [ -e "$ROOT$UNIT_DIR/$UNIT" ] && [ ! -e "$ROOT$KEEP/$UNIT" ] \
        && ! grep -q 'pyscale' "$ROOT$UNIT_DIR/$UNIT"; then
    cp -p "$ROOT$UNIT_DIR/$UNIT" "$ROOT$KEEP/$UNIT"
    say "kept the Headscale unit as $KEEP/$UNIT"
fi
sed "s|^Description=.*|Description=pyscale VPN Control Server (Headscale-compatible, unit $UNIT)|" \
    "$HERE/pyscale.service" > "$ROOT$UNIT_DIR/$UNIT"
chmod 644 "$ROOT$UNIT_DIR/$UNIT"
install -m 644 "$HERE/pyscale-backup.service" "$HERE/pyscale-backup.timer" "$ROOT$UNIT_DIR/"
LOW_PORT=$(PYSCALE_CONFIG="$ROOT$CONF_DIR/config.yaml" "$ROOT$VENV/bin/python" - <<'EOF' || true
import os
from pyscale.config import load_config_report
cfg = load_config_report(os.environ["PYSCALE_CONFIG"]).config
addrs = [cfg.listen_addr, cfg.metrics_listen_addr, cfg.grpc_listen_addr]
if cfg.derp.server.enabled:
    addrs.append(cfg.derp.server.stun_listen_addr)
ports = [int(a.rpartition(":")[2]) for a in addrs if a and a.rpartition(":")[2].isdigit()]
print(" ".join(str(p) for p in ports if 0 < p < 1024))
EOF
)
DROPIN_DIR="$ROOT$UNIT_DIR/$UNIT.d"
if [ -n "$LOW_PORT" ]; then
    mkdir -p "$DROPIN_DIR"
    printf '# written by install.sh: the config listens on port(s) %s < 1024\n[Service]\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n' \
        "$LOW_PORT" > "$DROPIN_DIR/10-low-ports.conf"
    say "ports $LOW_PORT < 1024: the unit gets CAP_NET_BIND_SERVICE (and nothing else)"
else
    rm -f "$DROPIN_DIR/10-low-ports.conf"
    rmdir "$DROPIN_DIR" 2>/dev/null || true
fi

# ---- 6. systemd ---------------------------------------------------------------------------------
if [ -n "$ROOT" ]; then
    systemctl --root="$ROOT" enable "$UNIT" >/dev/null 2>&1 || say "could not enable $UNIT in $ROOT"
    if [ "$BACKUP_TIMER" = 1 ]; then systemctl --root="$ROOT" enable pyscale-backup.timer >/dev/null 2>&1; fi
    say "installed into $ROOT ($UNIT enabled, not started)"
    exit 0
fi
[ -d /run/systemd/system ] || die "systemd is not running here: the files are in place, start $UNIT yourself"
systemctl daemon-reload
systemctl enable "$UNIT" >/dev/null 2>&1
if [ "$BACKUP_TIMER" = 1 ]; then systemctl enable --now pyscale-backup.timer >/dev/null 2>&1; fi
if [ "$START" = 1 ]; then
    # restart (not start) so an upgrade, or the drop-in over a running Headscale, takes effect now
    systemctl restart "$UNIT"
    say "$UNIT is $(systemctl is-active "$UNIT")"
fi
