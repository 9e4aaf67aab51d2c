"""Headscale v0.27.1's schema and the start-up check it runs on every database.

Headscale validates with tailscale/squibble: it compiles ``schema.sql`` into an in-memory
database and compares both ``sqlite_schema`` tables object by object, keyed by (type, name).
Tables are compared by their ``PRAGMA table_xinfo`` columns (name, upper-cased type, NOT NULL,
default, primary key, hidden), order-insensitive; indexes, views and triggers by their SQL text
with each line trimmed (line breaks still count). ``sqlite_sequence``, ``sqlite_autoindex_*``
and Litestream's ``_litestream_lock`` / ``_litestream_seq`` are ignored. ``schema_diff`` does the
same so pyscale never leaves a file that headscale v0.27.1 would refuse.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

SCHEMA_FILE = "schema_v0_27_1.sql"

# gormigrate ids in the `migrations` table of a v0.27.1 database, in the order Headscale runs them.
MIGRATION_IDS_V0_27_1: tuple[str, ...] = (
    "202312101416", "202312101430", "202402151347", "2024041121742", "202406021630",
    "202409271400", "202407191627", "202408181235", "202501221827", "202501311657",
    "202502070949", "202502131714", "202502171819", "202505091439", "202505141324",
    "202507021200", "202510311551", "202511101554-drop-old-idx",
)

IGNORED_TABLES = frozenset({"sqlite_sequence", "_schema_history", "_litestream_lock", "_litestream_seq"})


def schema_sql() -> str:
    return resources.files("pyscale.db").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    default: Any
    primary_key: bool
    hidden: int


@dataclass
class SchemaObject:
    type: str
    name: str
    table: str
    sql: str
    columns: frozenset[Column] = field(default_factory=frozenset)


def read_schema(conn: sqlite3.Connection) -> dict[tuple[str, str], SchemaObject]:
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM main.sqlite_schema").fetchall()
    out: dict[tuple[str, str], SchemaObject] = {}
    for rtype, name, table, sql in rows:
        if table in IGNORED_TABLES or name.startswith("sqlite_autoindex_"):
            continue
        obj = SchemaObject(rtype, name, table, sql or "")
        if rtype == "table":
            obj.columns = _read_columns(conn, name)
        out[(rtype, name)] = obj
    return out


def _read_columns(conn: sqlite3.Connection, table: str) -> frozenset[Column]:
    quoted = table.replace('"', '""')
    rows = conn.execute(f'PRAGMA main.table_xinfo("{quoted}")').fetchall()
    return frozenset(
        Column(name, (ctype or "").upper(), bool(notnull), default, bool(pk), hidden)
        for _cid, name, ctype, notnull, default, pk, hidden in rows
    )


def reference_schema() -> dict[tuple[str, str], SchemaObject]:
    ref = sqlite3.connect(":memory:")
    try:
        ref.executescript(schema_sql())
        return read_schema(ref)
    finally:
        ref.close()


def _clean_lines(sql: str) -> list[str]:
    lines = sql.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def schema_diff(conn: sqlite3.Connection) -> list[str]:
    """Every difference squibble would report between the file and schema.sql; [] means valid."""
    got, want = read_schema(conn), reference_schema()
    problems: list[str] = []
    for key, obj in sorted(got.items()):
        other = want.get(key)
        if other is None:
            problems.append(f"remove {obj.type} {obj.name!r}")
        elif obj.type == "table" or other.type == "table":
            for col in sorted(obj.columns - other.columns, key=lambda c: c.name):
                problems.append(f"table {obj.name!r}: unexpected column {col}")
            for col in sorted(other.columns - obj.columns, key=lambda c: c.name):
                problems.append(f"table {obj.name!r}: missing column {col}")
        elif _clean_lines(obj.sql) != _clean_lines(other.sql):
            problems.append(f"modify {obj.type} {obj.name!r}: {' '.join(obj.sql.split())!r}")
    for key, obj in sorted(want.items()):
        if key not in got:
            problems.append(f"add {obj.type} {obj.name!r}")
    return problems


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the v0.27.1 objects from schema.sql's own statements and record the 18 migration ids.

    Runs inside the caller's transaction (no executescript, which would commit it).
    """
    for statement in split_statements(schema_sql()):
        conn.execute(statement)
    conn.executemany("INSERT INTO migrations (id) VALUES (?)", [(i,) for i in MIGRATION_IDS_V0_27_1])


def split_statements(script: str) -> list[str]:
    """Split a script of DDL statements on ';' boundaries (sqlite3.complete_statement decides)."""
    statements: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        if not buf and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement at end of script: {buf[:60]!r}")
    return statements
