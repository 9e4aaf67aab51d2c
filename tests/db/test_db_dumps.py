"""Every Headscale SQLite fixture in shared/headscale/sqlite-dumps, opened with Database.open.

Headscale v0.27.1's own test suite migrates all 227 of its fixtures (0.2.0 .. 0.26.1 and edge
cases), so pyscale must too: each one opens, lists its records, and afterwards has exactly the
v0.27.1 schema (squibble's check and, stricter, byte-identical SQL to a fresh file). The four
fixtures from Headscale after v0.29 carry migration ids v0.27.1 does not know and must be refused,
unchanged. Data expectations below are the ones Headscale's TestSQLiteMigrationAndDataValidation
asserts for the same files (hscontrol/db/db_test.go at v0.27.1).
"""

from __future__ import annotations

import hashlib
import ipaddress
import sqlite3
from pathlib import Path

import pytest

from pyscale.db import Database, UnsupportedDatabase
from pyscale.db.schema import MIGRATION_IDS_V0_27_1, schema_diff
from pyscale.state.model import Node
from tests.db.dbtest_helpers import DUMP_OUTCOMES, DUMPS_DIR, raw_schema, reference_raw_schema

pytestmark = pytest.mark.asyncio

DUMPS = sorted(DUMPS_DIR.glob("*.sql"))
NEWER_THAN_V0_27_1 = {
    "null_tags_user_id_migration_test.sql",
    "recover_null_tags_user_id_migration_test.sql",
    "request_tags_migration_test.sql",
    "zero_time_expiry_migration_test.sql",
}


def _load(dump: Path, dest: Path) -> Path:
    conn = sqlite3.connect(dest)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # only building the fixture: no fsync needed
        conn.executescript(dump.read_text())
    finally:
        conn.close()
    return dest


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_dumps_present() -> None:
    assert len(DUMPS) >= 227


@pytest.mark.parametrize("dump", DUMPS, ids=[d.name for d in DUMPS])
async def test_dump(dump: Path, tmp_path: Path) -> None:
    path = _load(dump, tmp_path / "db.sqlite")
    if dump.name in NEWER_THAN_V0_27_1:
        before = _digest(path)
        with pytest.raises(UnsupportedDatabase, match="newer than 0.27.1") as info:
            await Database.open(str(path))
        assert str(path) in str(info.value)
        assert _digest(path) == before  # refused without a single write
        DUMP_OUTCOMES[dump.name] = "refused (newer than v0.27.1)"
        return
    db = await Database.open(str(path))
    try:
        nodes = await db.load_nodes()
        users = await db.load_users()
        keys = await db.load_preauthkeys()
        await db.load_apikeys()
        await db.load_policy()
        prepared = db.prepared
    finally:
        await db.close()
    assert prepared.migrated  # none of the fixtures is already v0.27.1
    assert prepared.backup_path is not None and Path(prepared.backup_path).exists()
    _assert_v0_27_1(path, tmp_path)
    assert all(n.user_id is None or n.user_id in {u.id for u in users} for n in nodes)
    assert all(k.user_id is None or k.user_id in {u.id for u in users} for k in keys)
    DUMP_OUTCOMES[dump.name] = "migrated to v0.27.1"


def _assert_v0_27_1(path: Path, tmp_path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        assert schema_diff(conn) == []
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        ids = {r[0] for r in conn.execute("SELECT id FROM migrations")}
    finally:
        conn.close()
    assert ids == set(MIGRATION_IDS_V0_27_1)
    # Stricter than squibble: every object's SQL is byte-identical to a fresh file's, except the
    # `migrations` table gormigrate created in the dump's own spelling (its columns match, checked above)
    # and what squibble ignores.
    got = raw_schema(path)
    want = reference_raw_schema(tmp_path)
    skip = ("sqlite_sequence", "_litestream_lock", "_litestream_seq", "sqlite_autoindex_migrations_1")
    for schema in (got, want):
        for key in [k for k in schema if k[1] in skip]:
            del schema[key]
    assert got.pop(("table", "migrations")) is not None and want.pop(("table", "migrations")) is not None
    assert got == want


async def _open_dump(name: str, tmp_path: Path) -> Database:
    return await Database.open(str(_load(DUMPS_DIR / name, tmp_path / "db.sqlite")))


def _by_id(nodes: list[Node]) -> dict[int, Node]:
    return {n.id: n for n in nodes}


async def test_routes_are_dropped_2063(tmp_path: Path) -> None:
    db = await _open_dump("0-22-3-to-0-23-0-routes-are-dropped-2063_dump.sql", tmp_path)
    try:
        assert len(await db.load_users()) == 4
        assert len(await db.load_preauthkeys()) == 17
        nodes = _by_id(await db.load_nodes())
    finally:
        await db.close()
    assert len(nodes) == 14
    for node_id, ipv4 in ((1, "100.64.0.1"), (26, "100.64.0.19"), (31, "100.64.0.7"), (32, "100.64.0.11")):
        n = nodes[node_id]
        want = ("test_hostname", "test_given_name", ipaddress.IPv4Address(ipv4))
        assert (n.hostname, n.given_name, n.ipv4) == want
        assert str(n.machine_key).startswith("mkey:") and str(n.node_key).startswith("nodekey:")
    assert nodes[1].approved_routes == ["0.0.0.0/0", "10.9.110.0/24", "::/0"]
    assert nodes[26].approved_routes == ["172.100.100.0/24"]
    assert nodes[31].approved_routes == ["0.0.0.0/0", "::/0"]
    assert nodes[32].approved_routes == ["192.168.0.24/32"]
    assert nodes[1].auth_key_id is None  # 0 meant "none" before 0.23


async def test_routes_fail_foreign_key_2076(tmp_path: Path) -> None:
    db = await _open_dump("0-22-3-to-0-23-0-routes-fail-foreign-key-2076_dump.sql", tmp_path)
    try:
        assert len(await db.load_users()) == 4
        assert len(await db.load_preauthkeys()) == 2
        nodes = _by_id(await db.load_nodes())
    finally:
        await db.close()
    assert len(nodes) == 8
    assert nodes[13].approved_routes == ["0.0.0.0/0", "10.18.80.2/32", "::/0"]


async def test_preauthkey_tags_table(tmp_path: Path) -> None:
    db = await _open_dump("0-23-0-to-0-24-0-preauthkey-tags-table_dump.sql", tmp_path)
    try:
        assert sorted(u.name for u in await db.load_users()) == ["kratest", "testkra"]
        keys = await db.load_preauthkeys()
    finally:
        await db.close()
    assert {k.id: set(k.tags) for k in keys} == {
        1: {"tag:derp"}, 2: {"tag:derp"}, 3: {"tag:derp", "tag:merp"}, 4: {"tag:test"},
        5: {"tag:test", "tag:woop", "tag:dedu"},
    }


async def test_no_more_special_types(tmp_path: Path) -> None:
    db = await _open_dump("0-23-0-to-0-24-0-no-more-special-types_dump.sql", tmp_path)
    try:
        assert len(await db.load_users()) == 2
        assert len(await db.load_preauthkeys()) == 2
        nodes = await db.load_nodes()
    finally:
        await db.close()
    assert len(nodes) == 12
    for n in nodes:
        assert not n.machine_key.is_zero() and not n.node_key.is_zero() and n.disco_key is not None
        assert n.ipv4 is not None and n.ipv6 is not None
        assert len(n.endpoints) == 1 and n.hostinfo is not None


async def test_failing_node_preauth_constraint(tmp_path: Path) -> None:
    db = await _open_dump("failing-node-preauth-constraint_dump.sql", tmp_path)
    try:
        assert len(await db.load_users()) == 1
        assert len(await db.load_apikeys()) == 2
        nodes = await db.load_nodes()
    finally:
        await db.close()
    assert len(nodes) == 6
    assert all(n.auth_key_id is None for n in nodes)  # dangling key references cleared


async def test_wrongly_migrated_0_25_1(tmp_path: Path) -> None:
    db = await _open_dump("wrongly-migrated-schema-0.25.1_dump.sql", tmp_path)
    try:
        users = {u.name: u.id for u in await db.load_users()}
        nodes = _by_id(await db.load_nodes())
        keys = await db.load_preauthkeys()
        api = await db.load_apikeys()
    finally:
        await db.close()
    assert users == {"user2": 1, "user1": 2}
    assert {i: (n.hostname, n.given_name, str(n.ipv4), str(n.ipv6), n.user_id) for i, n in nodes.items()} == {
        1: ("node1", "node1", "100.64.0.1", "fd7a:115c:a1e0::1", 1),
        2: ("node2", "node2", "100.64.0.2", "fd7a:115c:a1e0::2", 1),
        3: ("node3", "node3", "100.64.0.3", "fd7a:115c:a1e0::3", 2),
    }
    mkey = "mkey:1efe4388236c1c83fe0a19d3ce7c321ab81e138a4da57917c231ce4c01944409"
    assert str(nodes[1].machine_key) == mkey
    assert [nodes[i].approved_routes for i in (1, 2, 3)] == [["0.0.0.0/0", "::/0"], ["192.168.100.0/24"], []]
    assert [(k.id, k.key, k.user_id, k.reusable, k.used) for k in keys] == [
        (1, "3d133ec953e31fd41edbd935371234f762b4bae300cea618", 1, True, True),
        (2, "9813cc1df1832259fb6322dad788bb9bec89d8a01eef683a", 2, True, True),
    ]
    assert [(k.id, k.prefix, k.hash) for k in api] == [(1, "ak_test", b"\xde\xad\xbe\xef")]
    sql = raw_schema(tmp_path / "db.sqlite")[("table", "pre_auth_keys")]
    assert "ON DELETE SET NULL" in sql and "ON DELETE CASCADE" not in sql


NODE_VALUES = "SELECT id, node_key, ipv4, ipv6, last_seen, expiry, endpoints FROM nodes ORDER BY id"


async def test_nblock_values_survive_migration(tmp_path: Path) -> None:
    """A real 0.22 -> 0.26.1 database: every value reads back as it was stored (times with +02:00)."""
    src = _load(DUMPS_DIR / "from_nblock_db02__0.22.1__0.26.1.sql", tmp_path / "orig.sqlite")
    conn = sqlite3.connect(src)
    before = conn.execute(NODE_VALUES).fetchall()
    seq_before = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'nodes'").fetchone()
    conn.close()
    db = await Database.open(str(src))
    try:
        nodes = _by_id(await db.load_nodes())
    finally:
        await db.close()
    assert len(nodes) == 90
    conn = sqlite3.connect(src)
    after = conn.execute(NODE_VALUES).fetchall()
    seq_after = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'nodes'").fetchone()
    conn.close()
    assert after == before  # the rebuild copies every value verbatim
    if seq_before is not None:
        assert seq_after is not None and seq_after[0] >= seq_before[0]
    n1 = nodes[1]
    assert n1.last_seen is not None and n1.last_seen.utcoffset() is not None
    assert n1.last_seen.isoformat() == "2025-06-22T07:21:58.271483+02:00"
    assert n1.hostinfo == {"fake": "data"}
