"""Make the file at ``path`` a Headscale v0.27.1 database before pyscale uses it (sync, own thread).

- no objects yet: create schema.sql's statements and the 18 migration ids in one transaction;
- a valid v0.27.1 database: use it as it is;
- an older Headscale database: copy it aside, then migrate it (``migrate.py``) in one transaction,
  or refuse naming the version (rolled back: the file is unchanged);
- a newer or unknown one: refuse. Refusals never write to the file.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pyscale.db.errors import DatabaseError, UnsupportedDatabase
from pyscale.db.migrate import MigrationFailed, migrate
from pyscale.db.schema import create_schema, schema_diff
from pyscale.db.versions import Detected, detect

BUSY_TIMEOUT_S = 5.0


@dataclass
class PrepareResult:
    detected_version: str  # what the file was when opened ("new" for a fresh file)
    created: bool = False
    migrated: bool = False
    steps: list[str] = field(default_factory=list)  # Headscale migration ids replayed, in order
    backup_path: str | None = None  # copy of the original taken before migrating


def prepare_file(path: str, *, allow_migration: bool = True) -> PrepareResult:
    if os.path.isdir(path):
        raise DatabaseError(f"database path {path} is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, mode=0o700, exist_ok=True)  # like headscale's util.EnsureDir
    except OSError as exc:
        raise DatabaseError(f"cannot create directory {parent} for the database: {exc}") from exc
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open database {path}: {exc}") from exc
    try:
        return _prepare(conn, path, allow_migration)
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"database {path}: {exc}") from exc
    finally:
        conn.close()


def _prepare(conn: sqlite3.Connection, path: str, allow_migration: bool) -> PrepareResult:
    if _is_empty(conn):
        # Only settable before the first table exists; headscale creates its files this way too.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("BEGIN IMMEDIATE")  # hold the write lock from the look to the create
    try:
        if _is_empty(conn):
            create_schema(conn)
            conn.execute("COMMIT")
            return PrepareResult("new", created=True)
        conn.execute("ROLLBACK")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    found = detect(conn)
    if found.is_current:
        _require_valid(conn, path, found)
        return PrepareResult(found.version)
    if found.is_newer or not _looks_like_headscale(found):
        raise _refusal(path, found)
    if not allow_migration:
        raise UnsupportedDatabase(
            f"database {path} was written by Headscale {found.version} and needs migrating to v0.27.1, "
            "which is disabled",
            found.version,
        )
    return _migrate(conn, path, found)


@dataclass(frozen=True)
class Inspection:
    """What ``Database.open`` would do with a file, found without writing to it."""

    action: str  # "create" | "open" | "migrate" | "refuse"
    version: str  # detected Headscale version ("new" if there is no database yet)
    detail: str  # the refusal, or the migration steps that would run


def inspect_file(path: str) -> Inspection:
    """Dry run for `configtest`: detect the version and, for old files, migrate a copy in memory."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return Inspection("create", "new", "a new database with Headscale v0.27.1's schema")
    try:
        src = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        return Inspection("refuse", "unknown", f"cannot open {path}: {exc}")
    try:
        found = detect(src)
        if found.is_current:
            problems = schema_diff(src)
            return Inspection("refuse", found.version, "; ".join(problems)) if problems else Inspection(
                "open", found.version, "already v0.27.1"
            )
        if found.is_newer or not _looks_like_headscale(found):
            return Inspection("refuse", found.version, str(_refusal(path, found)))
        scratch = sqlite3.connect(":memory:", isolation_level=None)
        try:
            src.backup(scratch)
            steps = migrate(scratch, found.migration_ids)
        except (MigrationFailed, sqlite3.Error) as exc:
            return Inspection("refuse", found.version, f"migration would fail: {exc}")
        finally:
            scratch.close()
        return Inspection("migrate", found.version, f"would replay Headscale migrations {', '.join(steps)}")
    except sqlite3.DatabaseError as exc:
        return Inspection("refuse", "unknown", f"{path}: {exc}")
    finally:
        src.close()


def _looks_like_headscale(found: Detected) -> bool:
    return bool(found.tables & {"nodes", "machines"}) and bool(found.tables & {"users", "namespaces"})


def _migrate(conn: sqlite3.Connection, path: str, found: Detected) -> PrepareResult:
    backup = _backup_copy(conn, path, found.version)
    try:
        applied = migrate(conn, found.migration_ids)
    except (MigrationFailed, sqlite3.Error) as exc:
        raise UnsupportedDatabase(
            f"database {path} was written by Headscale {found.version} and cannot be migrated to v0.27.1 "
            f"faithfully: {exc}. The file was left unchanged.",
            found.version,
        ) from exc
    return PrepareResult(found.version, migrated=True, steps=applied, backup_path=backup)


def _backup_copy(conn: sqlite3.Connection, path: str, version: str) -> str:
    """Copy the untouched original next to it before the first write (SQLite online backup)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", version)
    dest = f"{path}.headscale-{slug}.bak"
    if os.path.exists(dest):
        dest = f"{path}.headscale-{slug}.{datetime.now(UTC):%Y%m%dT%H%M%SZ}.bak"
    target = sqlite3.connect(dest)
    try:
        conn.backup(target)
        target.execute("PRAGMA journal_mode = DELETE")
    finally:
        target.close()
    return dest


def _is_empty(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    return row is None or row[0] == 0


def _require_valid(conn: sqlite3.Connection, path: str, found: Detected) -> None:
    problems = schema_diff(conn)
    if problems:
        raise UnsupportedDatabase(
            f"database {path} claims Headscale {found.version} but its schema differs from v0.27.1's "
            f"(headscale itself would refuse it): {'; '.join(problems)}",
            found.version,
        )


def _refusal(path: str, found: Detected) -> UnsupportedDatabase:
    if found.is_newer:
        why = "it was written by a Headscale release newer than v0.27.1; pyscale does not downgrade databases"
    else:
        why = "pyscale cannot migrate this version faithfully; upgrade it with headscale first"
    return UnsupportedDatabase(
        f"database {path} was written by Headscale {found.version}: {why}", found.version
    )
