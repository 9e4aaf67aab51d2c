"""Shared helpers for the storage tests."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "headscale"  # copies of ../shared/headscale
REFERENCE_SCHEMA = DATA / "schema-v0.27.1.sql"
DUMPS_DIR = DATA / "sqlite-dumps"


def raw_schema(path: str | Path) -> dict[tuple[str, str], str]:
    """Every sqlite_schema object with its exact SQL text (stricter than squibble's check)."""
    conn = sqlite3.connect(path)
    try:
        return {(t, n): s for t, n, s in conn.execute("SELECT type, name, sql FROM sqlite_schema")}
    finally:
        conn.close()


def reference_raw_schema(tmp_path: Path | None = None) -> dict[tuple[str, str], str]:
    """The objects Headscale's own schema.sql (the shared copy, not pyscale's) creates."""
    return dict(_reference())


@functools.cache
def _reference() -> tuple[tuple[tuple[str, str], str], ...]:
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(REFERENCE_SCHEMA.read_text())
        return tuple(((t, n), s) for t, n, s in conn.execute("SELECT type, name, sql FROM sqlite_schema"))
    finally:
        conn.close()


# Outcome per dump file name ("migrated", "opened", "refused"), filled by test_db_dumps.py and
# printed as counts by conftest.py's terminal summary.
DUMP_OUTCOMES: dict[str, str] = {}
