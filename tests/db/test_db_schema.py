"""schema_diff reports exactly what headscale v0.27.1's start-up check (squibble) would."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from pyscale.db.schema import schema_diff, schema_sql, split_statements


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(":memory:")
    c.executescript(schema_sql())
    yield c
    c.close()


def test_reference_is_clean(conn: sqlite3.Connection) -> None:
    assert schema_diff(conn) == []


def test_column_order_and_type_case_do_not_matter(conn: sqlite3.Connection) -> None:
    conn.executescript(
        "DROP TABLE api_keys;"
        "CREATE TABLE `api_keys` (`id` integer PRIMARY KEY AUTOINCREMENT, `created_at` DATETIME,"
        " `prefix` TEXT, `hash` blob, `last_seen` datetime, `expiration` datetime);"
        "CREATE UNIQUE INDEX idx_api_keys_prefix ON api_keys(prefix);"
    )
    assert schema_diff(conn) == []


def test_foreign_keys_are_not_compared(conn: sqlite3.Connection) -> None:
    conn.executescript(
        "DROP TABLE pre_auth_keys;"
        "CREATE TABLE pre_auth_keys(id integer PRIMARY KEY AUTOINCREMENT, key text, user_id integer,"
        " reusable numeric, ephemeral numeric DEFAULT false, used numeric DEFAULT false, tags text,"
        " expiration datetime, created_at datetime,"
        " CONSTRAINT fk FOREIGN KEY(user_id) REFERENCES users(id) ON DELETE CASCADE);"
    )
    assert schema_diff(conn) == []


def test_index_lines_are_trimmed_but_line_breaks_count(conn: sqlite3.Connection) -> None:
    conn.executescript(
        "DROP INDEX idx_api_keys_prefix;"
        "CREATE UNIQUE INDEX idx_api_keys_prefix    ON api_keys(prefix)  ;"
    )
    assert schema_diff(conn) != []  # inner whitespace is not normalised
    conn.executescript(
        "DROP INDEX idx_provider_identifier;"
        "CREATE UNIQUE INDEX idx_provider_identifier ON users(\n      provider_identifier\n  )"
        " WHERE provider_identifier IS NOT NULL;"
    )
    assert not any("idx_provider_identifier" in p for p in schema_diff(conn))
    conn.executescript(
        "DROP INDEX idx_name_provider_identifier;"
        "CREATE UNIQUE INDEX idx_name_provider_identifier ON users (name,provider_identifier);"
    )  # the pre-0.27 one-line spelling: headscale v0.27.1 refuses it, hence migration 202507021200
    assert any("idx_name_provider_identifier" in p for p in schema_diff(conn))


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("CREATE TABLE extra(x)", "remove table 'extra'"),
        ("CREATE INDEX idx_nodes_hostname ON nodes(hostname)", "remove index 'idx_nodes_hostname'"),
        ("CREATE VIEW v AS SELECT 1", "remove view 'v'"),
        ("DROP INDEX idx_users_deleted_at", "add index 'idx_users_deleted_at'"),
        ("DROP TABLE policies", "add table 'policies'"),
        ("ALTER TABLE nodes ADD COLUMN tags text", "table 'nodes': unexpected column"),
        ("ALTER TABLE nodes DROP COLUMN approved_routes", "table 'nodes': missing column"),
        ("ANALYZE", "remove table 'sqlite_stat1'"),
    ],
)
def test_differences_found(conn: sqlite3.Connection, sql: str, problem: str) -> None:
    conn.execute(sql)
    assert any(p.startswith(problem) for p in schema_diff(conn)), schema_diff(conn)


def test_ignored_tables(conn: sqlite3.Connection) -> None:
    conn.executescript("CREATE TABLE _litestream_seq(id, seq); CREATE TABLE _litestream_lock(id);")
    conn.execute("INSERT INTO users (name) VALUES ('x')")  # sqlite_sequence appears
    assert schema_diff(conn) == []


def test_split_statements_keeps_comments_out() -> None:
    statements = split_statements(schema_sql())
    assert len(statements) == 12  # 6 tables, 6 indexes
    assert all(s.startswith("CREATE ") and s.endswith(";") for s in statements)
