"""Shared helpers for the storage tests."""

from __future__ import annotations

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


def reference_raw_schema(tmp_path: Path) -> dict[tuple[str, str], str]:
    ref = tmp_path / "reference.db"
    conn = sqlite3.connect(ref)
    conn.executescript(REFERENCE_SCHEMA.read_text())
    conn.close()
    return raw_schema(ref)
