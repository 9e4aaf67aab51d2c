#!/usr/bin/env bash
# Install pyscale into .venv and run it. Without a config file it runs on the embedded default:
# data in $PYSCALE_DATA_DIR (default ~/.local/share/pyscale), everything on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q .
exec .venv/bin/pyscale serve "$@"
