"""Which Headscale version wrote a database, judged from its `migrations` ids and table shape.

Headscale (>= 0.23) records each gormigrate migration id it ran; the last known id pins the
release closely enough for a clear message ("written by headscale 0.24.1/0.24.2"). Before 0.23
there is no `migrations` table and the tables themselves tell the era (`machines`/`namespaces`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from pyscale.db.schema import MIGRATION_IDS_V0_27_1

# Last migration id present -> the Headscale release(s) that stop there.
_RELEASE_BY_LAST_ID = {
    "202312101416": "0.23.0-alpha1",
    "202312101430": "0.23.0-alpha2..alpha4",
    "202402151347": "0.23.0-alpha5..alpha6",
    "2024041121742": "0.23.0-alpha7..alpha12",
    "202406021630": "0.23.0",
    "202409271400": "0.24.0-beta",
    "202407191627": "0.24.0-beta",
    "202408181235": "0.24.0",
    "202501221827": "0.24.1/0.24.2",
    "202501311657": "0.25.0-beta.1",
    "202502070949": "0.24.3/0.25.x",
    "202502131714": "0.26.0-beta.1",
    "202502171819": "0.26.0-beta.1",
    "202505091439": "0.26.0-beta.2",
    "202505141324": "0.26.x",
    "202507021200": "0.27.0",
    "202510311551": "0.27.1-dev",  # both later ids arrived together in v0.27.1
    "202511101554-drop-old-idx": "0.27.1",
}


@dataclass(frozen=True)
class Detected:
    version: str  # human-readable Headscale release, e.g. "0.26.x", "0.27.1", "newer than 0.27.1"
    migration_ids: tuple[str, ...]
    tables: frozenset[str]
    is_current: bool  # all 18 v0.27.1 ids and nothing else
    is_newer: bool  # carries migration ids v0.27.1 does not know

    @property
    def last_id(self) -> str | None:
        known = [i for i in self.migration_ids if i in _RELEASE_BY_LAST_ID]
        return max(known, key=MIGRATION_IDS_V0_27_1.index) if known else None


def detect(conn: sqlite3.Connection) -> Detected:
    tables = frozenset(
        r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
        if not r[0].startswith("sqlite_")
    )
    ids: tuple[str, ...] = ()
    if "migrations" in tables:
        ids = tuple(str(r[0]) for r in conn.execute("SELECT id FROM migrations"))
    unknown = sorted(i for i in ids if i not in _RELEASE_BY_LAST_ID)
    if unknown:
        more = "..." if len(unknown) > 3 else ""
        version = f"newer than 0.27.1 (migrations {', '.join(unknown[:3])}{more})"
        return Detected(version, ids, tables, False, True)
    current = set(ids) == set(MIGRATION_IDS_V0_27_1)
    return Detected(_version_name(ids, tables), ids, tables, current, False)


def _version_name(ids: tuple[str, ...], tables: frozenset[str]) -> str:
    if ids:
        last = max(ids, key=MIGRATION_IDS_V0_27_1.index)
        return _RELEASE_BY_LAST_ID[last]
    if "migrations" in tables:
        return "0.23+ (empty migrations table)"
    if "namespaces" in tables:
        return "0.18 or older (namespaces era)"
    if "machines" in tables:
        return "0.19-0.22 (machines era)"
    if "nodes" in tables:
        return "0.23.0-alpha1"
    return "unknown (not a Headscale database)"
