"""Database: fresh files in exactly v0.27.1's schema, and every record type round-tripped."""

from __future__ import annotations

import asyncio
import ipaddress
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import pytest_asyncio

from pyscale.db import Database, DatabaseError, DecodeError, UnsupportedDatabase
from pyscale.db.schema import MIGRATION_IDS_V0_27_1, schema_diff
from pyscale.keys import DiscoPublic, MachinePublic, NodePublic
from pyscale.state.model import ZERO_TIME, ApiKey, Node, PreAuthKey, User
from tests.db.dbtest_helpers import raw_schema, reference_raw_schema

ODD = timezone(timedelta(hours=5, minutes=45))
pytestmark = pytest.mark.asyncio

T1 = datetime(2025, 6, 22, 7, 21, 58, 271483, tzinfo=UTC)
T2 = datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=ODD)


@pytest_asyncio.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(str(tmp_path / "db.sqlite"))
    yield database
    await database.close()


def _node(n: int, user_id: int | None, **kw: object) -> Node:
    base = dict(
        id=0,
        machine_key=MachinePublic(bytes([n]) * 32),
        node_key=NodePublic(bytes([n + 1]) * 32),
        disco_key=DiscoPublic(bytes([n + 2]) * 32),
        endpoints=["1.2.3.4:41641", "[2001:db8::1]:41641"],
        hostinfo={"Hostname": f"host{n}", "OS": "linux", "RoutableIPs": ["10.0.0.0/24"],
                  "NetInfo": {"PreferredDERP": 1}},
        ipv4=ipaddress.IPv4Address(f"100.64.0.{n}"),
        ipv6=ipaddress.IPv6Address(f"fd7a:115c:a1e0::{n}"),
        hostname=f"host{n}", given_name=f"host{n}", user_id=user_id, register_method="authkey",
        forced_tags=["tag:a"], auth_key_id=None, last_seen=T1, expiry=ZERO_TIME,
        approved_routes=["10.0.0.0/24", "0.0.0.0/0", "::/0"], created_at=T1, updated_at=T2,
    )
    base.update(kw)
    return Node(**base)  # type: ignore[arg-type]


async def test_fresh_file_is_exactly_v0_27_1(tmp_path: Path, db: Database) -> None:
    assert db.prepared.created
    got = raw_schema(db.path)
    want = reference_raw_schema(tmp_path)
    got.pop(("table", "sqlite_sequence"), None)
    want.pop(("table", "sqlite_sequence"), None)
    assert got == want  # same objects, byte-identical SQL (squibble only needs columns + index SQL)
    conn = sqlite3.connect(db.path)
    try:
        assert schema_diff(conn) == []
        ids = [r[0] for r in conn.execute("SELECT id FROM migrations")]
    finally:
        conn.close()
    assert sorted(ids) == sorted(MIGRATION_IDS_V0_27_1) and len(ids) == 18


async def test_creates_missing_directory(tmp_path: Path) -> None:
    d = await Database.open(str(tmp_path / "a" / "b" / "db.sqlite"))
    try:
        assert d.prepared.created
        async with d._conn.execute("PRAGMA auto_vacuum") as cur:
            row = await cur.fetchone()
        assert row is not None and row[0] == 2  # INCREMENTAL, as headscale creates its files
    finally:
        await d.close()


async def test_reopen_and_pragmas(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    first = await Database.open(path)
    await first.insert_user(User(id=0, name="alice", created_at=T1, updated_at=T1))
    await first.close()
    second = await Database.open(path, wal_autocheckpoint=500)
    try:
        assert not second.prepared.created and second.prepared.detected_version == "0.27.1"
        assert [u.name for u in await second.load_users()] == ["alice"]
        conn = second._conn
        for pragma, want in (("journal_mode", "wal"), ("foreign_keys", 1), ("synchronous", 2),
                             ("wal_autocheckpoint", 500), ("busy_timeout", 5000)):
            async with conn.execute(f"PRAGMA {pragma}") as cur:
                row = await cur.fetchone()
            assert row is not None and row[0] == want, pragma
        assert await second.ping()
    finally:
        await second.close()
    assert not await second.ping()  # closed
    await second.close()  # idempotent


async def test_rollback_journal_when_wal_disabled(tmp_path: Path) -> None:
    d = await Database.open(str(tmp_path / "db.sqlite"), write_ahead_log=False)
    try:
        async with d._conn.execute("PRAGMA journal_mode") as cur:
            row = await cur.fetchone()
        assert row is not None and row[0] == "delete"
    finally:
        await d.close()


async def test_users_roundtrip(db: Database) -> None:
    local = User(id=999, name="alice", created_at=T1, updated_at=T2)
    oidc = User(id=0, name="alice", display_name="Alice A", email="a@example.com",
                provider_identifier="https://idp.example.com/123", provider="oidc",
                profile_pic_url="https://example.com/p.png", created_at=ZERO_TIME, updated_at=T1)
    id1 = await db.insert_user(local)
    id2 = await db.insert_user(oidc)
    assert (id1, id2) == (1, 2)  # the id passed in is ignored
    local.id, oidc.id = id1, id2
    assert await db.load_users() == [local, oidc]
    with pytest.raises(DatabaseError):  # idx_name_no_provider_identifier
        await db.insert_user(User(id=0, name="alice", created_at=T1, updated_at=T1))
    local.name, local.updated_at = "alicia", T1
    await db.update_user(local)
    assert (await db.load_users())[0] == local
    await db.delete_user(id1)
    assert await db.load_users() == [oidc]
    with pytest.raises(DatabaseError):
        await db.update_user(local)  # gone


async def test_soft_deleted_users_hidden(db: Database) -> None:
    uid = await db.insert_user(User(id=0, name="ghost", created_at=T1, updated_at=T1))
    await db._conn.execute("UPDATE users SET deleted_at = ? WHERE id = ?", ("2025-01-01 00:00:00+00:00", uid))
    assert await db.load_users() == []


async def test_preauthkeys_roundtrip(db: Database) -> None:
    uid = await db.insert_user(User(id=0, name="bob", created_at=T1, updated_at=T1))
    k1 = PreAuthKey(id=0, key="ab" * 24, user_id=uid, reusable=True, ephemeral=False, used=False,
                    tags=["tag:server", "tag:prod"], expiration=T2, created_at=T1)
    k2 = PreAuthKey(id=0, key="cd" * 24, user_id=uid, expiration=ZERO_TIME, created_at=T1)
    k3 = PreAuthKey(id=0, key="ef" * 24, user_id=None, ephemeral=True, used=True, expiration=None,
                    created_at=T2)
    for k in (k1, k2, k3):
        k.id = await db.insert_preauthkey(k)
    assert await db.load_preauthkeys() == [k1, k2, k3]
    k1.used, k1.tags = True, []
    await db.update_preauthkey(k1)
    assert (await db.load_preauthkeys())[0] == k1
    await db.delete_preauthkey(k2.id)
    assert [k.id for k in await db.load_preauthkeys()] == [k1.id, k3.id]
    await db.delete_user(uid)  # ON DELETE SET NULL
    assert [k.user_id for k in await db.load_preauthkeys()] == [None, None]
    raw = await _raw(db, "SELECT reusable, ephemeral, used, tags, expiration FROM pre_auth_keys ORDER BY id")
    assert raw[0] == (1, 0, 1, "[]", "2024-02-29 23:59:59.000001+05:45")


async def test_apikeys_roundtrip(db: Database) -> None:
    k1 = ApiKey(id=0, prefix="abcdefg", hash=b"$2a$10$" + b"x" * 53, expiration=T2, last_seen=None,
                created_at=T1)
    k2 = ApiKey(id=0, prefix="hijklmn", hash=b"$2a$10$y", expiration=ZERO_TIME, last_seen=T1, created_at=T1)
    k1.id = await db.insert_apikey(k1)
    k2.id = await db.insert_apikey(k2)
    assert await db.load_apikeys() == [k1, k2]
    with pytest.raises(DatabaseError):  # idx_api_keys_prefix
        await db.insert_apikey(ApiKey(id=0, prefix="abcdefg", hash=b"z", created_at=T1))
    k1.last_seen = T2
    await db.update_apikey(k1)
    assert (await db.load_apikeys())[0] == k1
    await db.delete_apikey(k2.id)
    assert await db.load_apikeys() == [k1]
    raw = await _raw(db, "SELECT typeof(hash), hash FROM api_keys")
    assert raw == [("blob", k1.hash)]


async def test_nodes_roundtrip(db: Database) -> None:
    uid = await db.insert_user(User(id=0, name="carol", created_at=T1, updated_at=T1))
    kid = await db.insert_preauthkey(PreAuthKey(id=0, key="0" * 48, user_id=uid, created_at=T1))
    full = _node(1, uid, auth_key_id=kid)
    bare = _node(5, uid, disco_key=None, endpoints=[], hostinfo=None, ipv4=None, ipv6=None,
                 forced_tags=[], last_seen=None, expiry=None, approved_routes=[], register_method="cli")
    expiring = _node(9, uid, expiry=T2, created_at=ZERO_TIME)
    for n in (full, bare, expiring):
        n.id = await db.insert_node(n)
    assert await db.load_nodes() == [full, bare, expiring]
    full.node_key, full.endpoints, full.expiry = NodePublic(b"\x42" * 32), ["5.6.7.8:1"], T1
    await db.update_node(full)
    assert (await db.load_nodes())[0] == full
    raw = await _raw(db, "SELECT machine_key, node_key, disco_key, endpoints, host_info, ipv4, ipv6, "
                         "forced_tags, expiry, approved_routes, last_seen FROM nodes ORDER BY id")
    assert raw[1] == ("mkey:" + "05" * 32, "nodekey:" + "06" * 32, "discokey:" + "00" * 32, "[]", None,
                      None, None, "[]", None, None, None)  # no approved routes: NULL, as gorm writes a nil slice
    assert raw[2][8] == "2024-02-29 23:59:59.000001+05:45"
    assert raw[0][3] == '["5.6.7.8:1"]' and raw[0][5:7] == ("100.64.0.1", "fd7a:115c:a1e0::1")
    with pytest.raises(DatabaseError):  # fk_nodes_auth_key: the key cannot go while a node uses it
        await db.delete_preauthkey(kid)
    await db.delete_node(bare.id)
    assert [n.id for n in await db.load_nodes()] == [full.id, expiring.id]
    with pytest.raises(DatabaseError):  # foreign keys are enforced
        await db.insert_node(_node(20, 12345))
    await db.delete_user(uid)  # ON DELETE CASCADE removes the user's nodes
    assert await db.load_nodes() == []


async def test_policy(db: Database) -> None:
    assert await db.load_policy() is None
    assert await db.insert_policy('{"acls": []}') == 1
    assert await db.insert_policy('{"acls": [1]}') == 2
    assert await db.load_policy() == '{"acls": [1]}'
    assert len(await _raw(db, "SELECT id FROM policies")) == 2  # every version is kept


async def test_transaction_commits_or_rolls_back(db: Database) -> None:
    async with db.transaction():
        uid = await db.insert_user(User(id=0, name="dave", created_at=T1, updated_at=T1))
        await db.insert_preauthkey(PreAuthKey(id=0, key="1" * 48, user_id=uid, created_at=T1))
    assert len(await db.load_preauthkeys()) == 1
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.insert_user(User(id=0, name="erin", created_at=T1, updated_at=T1))
            raise RuntimeError("boom")
    assert [u.name for u in await db.load_users()] == ["dave"]


async def test_concurrent_task_waits_for_transaction(db: Database) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def tx() -> None:
        async with db.transaction():
            await db.insert_user(User(id=0, name="in-tx", created_at=T1, updated_at=T1))
            entered.set()
            await release.wait()
            raise RuntimeError("rollback")

    task = asyncio.create_task(tx())
    await entered.wait()
    other = asyncio.create_task(db.insert_user(User(id=0, name="outside", created_at=T1, updated_at=T1)))
    await asyncio.sleep(0)
    assert not other.done()  # waits on the lock instead of joining the open transaction
    release.set()
    with pytest.raises(RuntimeError):
        await task
    await other
    assert [u.name for u in await db.load_users()] == ["outside"]


async def test_backup_is_consistent_copy(tmp_path: Path, db: Database) -> None:
    for i in range(20):
        await db.insert_user(User(id=0, name=f"u{i}", created_at=T1, updated_at=T1))
    dest = tmp_path / "backup.sqlite"
    writer = asyncio.create_task(_insert_many(db, 100))
    await db.backup(str(dest))
    await writer
    conn = sqlite3.connect(dest)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] >= 20
        assert schema_diff(conn) == []
    finally:
        conn.close()
    reopened = await Database.open(str(dest))
    await reopened.close()


async def test_backup_guards(tmp_path: Path, db: Database) -> None:
    with pytest.raises(DatabaseError, match="live database"):
        await db.backup(db.path)
    dest = tmp_path / "b.sqlite"
    old = await Database.open(str(dest))  # an older copy in WAL mode with a pending -wal file
    await old.insert_user(User(id=0, name="stale", created_at=T1, updated_at=T1))
    wal = Path(f"{dest}-wal").read_bytes()
    await old._conn.close()  # the last close checkpoints and deletes the -wal ...
    Path(f"{dest}-wal").write_bytes(wal)  # ... so put it back, as a crashed process would leave it
    await db.insert_user(User(id=0, name="fresh", created_at=T1, updated_at=T1))
    await db.backup(str(dest))
    assert not Path(f"{dest}-wal").exists()
    conn = sqlite3.connect(dest)
    try:
        assert [r[0] for r in conn.execute("SELECT name FROM users")] == ["fresh"]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


async def test_refuses_unknown_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseError):
        await Database.open(str(junk))
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    with pytest.raises(UnsupportedDatabase, match="not a Headscale database"):
        await Database.open(str(other))
    assert raw_schema(other) == {("table", "t"): "CREATE TABLE t(x)"}  # untouched


async def _insert_many(db: Database, n: int) -> None:
    for i in range(n):
        await db.insert_user(User(id=0, name=f"w{i}", created_at=T1, updated_at=T1))


async def _raw(db: Database, sql: str) -> list[tuple[object, ...]]:
    async with db._conn.execute(sql) as cur:
        return [tuple(r) for r in await cur.fetchall()]


async def test_bad_stored_value_names_table_and_row(db: Database) -> None:
    uid = await db.insert_user(User(id=0, name="frank", created_at=T1, updated_at=T1))
    nid = await db.insert_node(_node(3, uid))
    await db._conn.execute("UPDATE nodes SET expiry = 'next tuesday' WHERE id = ?", (nid,))
    with pytest.raises(DecodeError, match=f"nodes row {nid}: unparseable timestamp 'next tuesday'"):
        await db.load_nodes()


async def test_failed_write_inside_transaction_rolls_back_all(db: Database) -> None:
    with pytest.raises(DatabaseError):
        async with db.transaction():
            await db.insert_user(User(id=0, name="gina", created_at=T1, updated_at=T1))
            await db.insert_user(User(id=0, name="gina", created_at=T1, updated_at=T1))  # unique index
    assert await db.load_users() == []
    async with db.transaction():  # the connection is usable again
        await db.insert_user(User(id=0, name="gina", created_at=T1, updated_at=T1))
    assert [u.name for u in await db.load_users()] == ["gina"]
