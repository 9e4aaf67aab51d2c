"""Migration and refusal paths: a failed migration leaves the file byte-for-byte unchanged."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from pyscale.db import Database, Inspection, UnsupportedDatabase, inspect_file
from pyscale.db.migrate import clean_identifier, read_migration
from pyscale.db.schema import schema_diff
from pyscale.db.versions import detect
from tests.db.dbtest_helpers import DUMPS_DIR

pytestmark = pytest.mark.asyncio


def _load(name: str, dest: Path, *extra_sql: str) -> Path:
    conn = sqlite3.connect(dest)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # only building the fixture: no fsync needed
        conn.executescript((DUMPS_DIR / name).read_text())
        for sql in extra_sql:
            conn.execute(sql)
        conn.commit()
    finally:
        conn.close()
    return dest


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _assert_refused_unchanged(path: Path, match: str) -> UnsupportedDatabase:
    before = _digest(path)
    with pytest.raises(UnsupportedDatabase, match=match) as info:
        await Database.open(str(path))
    assert _digest(path) == before
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    return info.value


# Headscale's own table for types.CleanIdentifier (hscontrol/types/users_test.go at v0.27.1).
@pytest.mark.parametrize(
    ("identifier", "want"),
    [
        ("", ""), ("oidc/sub", "oidc/sub"), ("oidc//sub", "oidc/sub"), ("oidc/sub/", "oidc/sub"),
        ("oidc//sub///id//", "oidc/sub/id"), ("http://example.com/path", "http://example.com/path"),
        ("http://example.com//path///resource", "http://example.com/path/resource"),
        ("https://example.com///path//", "https://example.com/path"),
        ("https://login.microsoftonline.com//v2.0/I-70OQnj3TogrNSfkZQqB3f7dGwyBWSm1dolHNKrMzQ",
         "https://login.microsoftonline.com/v2.0/I-70OQnj3TogrNSfkZQqB3f7dGwyBWSm1dolHNKrMzQ"),
        ("ftp://example.com//resource//", "ftp://example.com/resource"), ("///", ""),
        ("/path//to///resource", "path/to/resource"),
        ("ldap://example.org//path//to//resource", "ldap://example.org/path/to/resource"),
    ],
)
async def test_clean_identifier(identifier: str, want: str) -> None:
    assert clean_identifier(identifier) == want


async def test_identifier_cleaned_by_0_26_migration(tmp_path: Path) -> None:
    path = _load(
        "headscale_0.25.1_dump.sql", tmp_path / "db.sqlite",
        "INSERT INTO users (id, name, provider_identifier, provider) "
        "VALUES (7, 'eve', 'https://idp.example.com//sub//7', 'oidc')",
    )
    db = await Database.open(str(path))
    try:
        users = await db.load_users()
    finally:
        await db.close()
    assert [(u.id, u.provider_identifier) for u in users] == [(7, "https://idp.example.com/sub/7")]


async def test_bad_route_prefix_refuses_and_rolls_back(tmp_path: Path) -> None:
    path = _load(
        "0-22-3-to-0-23-0-routes-are-dropped-2063_dump.sql", tmp_path / "db.sqlite",
        "INSERT INTO routes (id, machine_id, prefix, advertised, enabled, is_primary) "
        "VALUES (999, 1, 'not-a-prefix', 1, 1, 0)",
    )
    err = await _assert_refused_unchanged(path, "0.19-0.22")
    assert "not-a-prefix" in str(err) and "left unchanged" in str(err)
    assert err.detected_version == "0.19-0.22 (machines era)"
    # the untouched copy taken before migrating opens like the original
    assert Path(f"{path}.headscale-0.19-0.22_machines_era_.bak").exists()


async def test_foreign_key_violation_refuses(tmp_path: Path) -> None:
    # headscale v0.27.1 fails the same way ("foreign key constraints violated")
    path = _load(
        "headscale_0.26.1_dump.sql", tmp_path / "db.sqlite",
        "INSERT INTO nodes (id, machine_key, node_key, user_id) VALUES (5, 'mkey:00', 'nodekey:00', 42)",
    )
    err = await _assert_refused_unchanged(path, "foreign key constraints violated")
    assert "0.26.x" in str(err)


async def test_modified_current_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = await Database.open(str(path))
    await db.close()
    conn = sqlite3.connect(path)
    conn.execute("CREATE INDEX idx_nodes_hostname ON nodes(hostname)")  # headscale would refuse this file
    conn.commit()
    conn.close()
    err = await _assert_refused_unchanged(path, "schema differs")
    assert "idx_nodes_hostname" in str(err)


async def test_analyze_statistics_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = await Database.open(str(path))
    await db.close()
    conn = sqlite3.connect(path)
    conn.execute("ANALYZE")  # creates sqlite_stat1, which squibble reports as an extra table
    conn.commit()
    conn.close()
    await _assert_refused_unchanged(path, "sqlite_stat1")


async def test_litestream_tables_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = await Database.open(str(path))
    await db.close()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER)")
    conn.execute("CREATE TABLE _litestream_lock (id INTEGER)")
    conn.commit()
    conn.close()
    db = await Database.open(str(path))
    await db.close()
    assert db.prepared.detected_version == "0.27.1" and not db.prepared.migrated


async def test_detect_versions(tmp_path: Path) -> None:
    cases = {
        "headscale_0.2.0_dump.sql": "0.18 or older (namespaces era)",
        "headscale_0.22.3_dump.sql": "0.19-0.22 (machines era)",
        "headscale_0.23.0-alpha5_dump.sql": "0.23.0-alpha5..alpha6",
        "headscale_0.24.1_dump.sql": "0.24.1/0.24.2",
        "headscale_0.26.1_dump.sql": "0.26.x",
    }
    for name, want in cases.items():
        path = _load(name, tmp_path / f"{name}.sqlite")
        conn = sqlite3.connect(path)
        try:
            assert detect(conn).version == want, name
        finally:
            conn.close()


async def test_migrated_file_reopens_without_migrating(tmp_path: Path) -> None:
    path = _load("from_nblock_db01__0.14.0__0.26.1.sql", tmp_path / "db.sqlite")
    first = await Database.open(str(path))
    await first.close()
    assert first.prepared.migrated and first.prepared.steps == [
        "202507021200", "202510311551", "202511101554-drop-old-idx",
    ]
    second = await Database.open(str(path))
    try:
        assert not second.prepared.migrated and second.prepared.detected_version == "0.27.1"
        assert len(await second.load_nodes()) == 22
    finally:
        await second.close()


async def test_inspect_file_writes_nothing(tmp_path: Path) -> None:
    assert inspect_file(str(tmp_path / "none.sqlite")).action == "create"
    old = _load("from_nblock_db02__0.22.1__0.25.1.sql", tmp_path / "old.sqlite")
    bad = _load(
        "0-22-3-to-0-23-0-routes-are-dropped-2063_dump.sql", tmp_path / "bad.sqlite",
        "INSERT INTO routes (id, machine_id, prefix, advertised, enabled, is_primary) "
        "VALUES (999, 1, 'nonsense', 1, 1, 0)",
    )
    newer = _load("request_tags_migration_test.sql", tmp_path / "newer.sqlite")
    digests = {p: _digest(p) for p in (old, bad, newer)}
    got = {p.name: inspect_file(str(p)) for p in (old, bad, newer)}
    assert {n: i.action for n, i in got.items()} == {
        "old.sqlite": "migrate", "bad.sqlite": "refuse", "newer.sqlite": "refuse",
    }
    assert got["old.sqlite"].version == "0.24.3/0.25.x" and "202502131714" in got["old.sqlite"].detail
    assert "nonsense" in got["bad.sqlite"].detail
    assert {p: _digest(p) for p in digests} == digests
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bad.sqlite", "newer.sqlite", "old.sqlite"]
    current = tmp_path / "current.sqlite"
    db = await Database.open(str(current))  # WAL mode file, then closed: inspect reads it read-only
    await db.close()
    assert inspect_file(str(current)) == Inspection("open", "0.27.1", "already v0.27.1")


async def test_migration_can_be_disabled(tmp_path: Path) -> None:
    path = _load("headscale_0.26.1_dump.sql", tmp_path / "db.sqlite")
    before = _digest(path)
    with pytest.raises(UnsupportedDatabase, match="needs migrating to v0.27.1, which is disabled"):
        await Database.open(str(path), allow_migration=False)
    assert _digest(path) == before


async def test_sql_steps_ship_with_the_package() -> None:
    """Every migrations/NNNN_*.sql is reachable as package data (pyscale/db symlinks), identical."""
    repo = Path(__file__).resolve().parents[2]
    files = sorted(p.name for p in (repo / "migrations").glob("*.sql"))
    assert files == [
        "0001_headscale_202507021200_rebuild_tables.sql",
        "0002_headscale_202510311551_drop_legacy_tables.sql",
        "0003_headscale_202511101554_drop_old_indexes.sql",
    ]
    for name in files:
        packaged = repo / "pyscale" / "db" / name
        assert packaged.is_symlink() and packaged.resolve() == (repo / "migrations" / name).resolve()
        assert read_migration(name) == (repo / "migrations" / name).read_text()


async def test_v0_27_0_file_gets_the_two_v0_27_1_steps(tmp_path: Path) -> None:
    """A v0.27.0 file (ids up to 202507021200, leftover legacy table) gets 202510311551 + drop-old-idx."""
    path = tmp_path / "db.sqlite"
    db = await Database.open(str(path))
    await db.close()
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM migrations WHERE id IN ('202510311551', '202511101554-drop-old-idx')")
    conn.execute("CREATE TABLE routes (id integer, deleted_at datetime)")
    conn.execute("CREATE INDEX idx_routes_deleted_at ON routes(deleted_at)")
    conn.commit()
    conn.close()
    db = await Database.open(str(path))
    await db.close()
    assert db.prepared.detected_version == "0.27.0"
    assert db.prepared.steps == ["202510311551", "202511101554-drop-old-idx"]
    conn = sqlite3.connect(path)
    try:
        assert schema_diff(conn) == []
    finally:
        conn.close()
