#!/usr/bin/env bash
# Install pyscale with its test dependencies into .venv and run every check: ruff, mypy, pytest
# (unit, vector and real-client interop tests). Idempotent; safe to run on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/ruff check pyscale derp tests bench
.venv/bin/mypy pyscale derp
exec .venv/bin/python -m pytest -q "$@"
