"""The one connection to Headscale's SQLite file, used only by State.

Opening is two steps. First, in a worker thread with the stdlib driver, the file is checked
(and created or migrated) so that it has exactly Headscale v0.27.1's shape (``prepare.py``).
Then one aiosqlite connection serves every read and write. Each write outside an explicit
``transaction()`` is its own autocommitted statement, committed (and, with
``synchronous=FULL``, fsynced) before the coroutine returns: a kill -9 afterwards cannot lose
it. ``transaction()`` groups several writes into one atomic commit. An asyncio lock keeps a
transaction's statements from interleaving with another task's on the shared connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from pyscale.db import codec, rows
from pyscale.db.errors import DatabaseError, DecodeError
from pyscale.db.prepare import PrepareResult, prepare_file
from pyscale.state.model import ApiKey, Node, PreAuthKey, User

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000  # another process (a backup tool, the sqlite3 shell) may hold the lock briefly


class Database:
    def __init__(self, conn: aiosqlite.Connection, path: str, prepared: PrepareResult) -> None:
        self._conn = conn
        self.path = path
        self.prepared = prepared  # what open() found and did (detected version, migrations applied)
        self._lock = asyncio.Lock()
        self._tx_owner: asyncio.Task[Any] | None = None
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        write_ahead_log: bool = True,
        wal_autocheckpoint: int = 1000,
        allow_migration: bool = True,
    ) -> Database:
        """Open (create, or migrate an older Headscale file to v0.27.1) and configure the connection.

        Raises UnsupportedDatabase (with ``detected_version``) for files it will not use, and
        DatabaseError for anything else; ``self.prepared`` tells what was found and done.
        """
        prepared = await asyncio.to_thread(prepare_file, path, allow_migration=allow_migration)
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open database {path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        try:
            await _apply_pragmas(conn, write_ahead_log, wal_autocheckpoint)
        except sqlite3.Error as exc:
            await conn.close()
            raise DatabaseError(f"cannot configure database {path}: {exc}") from exc
        return cls(conn, path, prepared)

    async def close(self) -> None:
        """Checkpoint the WAL into the main file and close; safe to call twice."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                # No ANALYZE / PRAGMA optimize ever: they create sqlite_stat1, which headscale's schema
                # check reports as an extra table and refuses to start.
                await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await self._conn.close()

    async def ping(self) -> bool:
        try:
            async with self._locked(), self._conn.execute("SELECT 1") as cur:
                row = await cur.fetchone()
            return row is not None and row[0] == 1
        except (sqlite3.Error, ValueError):
            return False

    async def backup(self, dest_path: str) -> None:
        """Copy a consistent snapshot to ``dest_path`` (atomically replaced) while writes go on.

        A second, read-only connection copies the file with SQLite's online backup API in a single
        step, so it sees one snapshot; in WAL mode the writer is not blocked meanwhile.
        """
        await asyncio.to_thread(_backup_file, self.path, dest_path)

    # --- transactions -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Several writes, one commit: all of them land or none (rolled back on any exception).

        Only the task that opened it writes through it; other tasks' calls wait until it ends (so
        the owner must not await another task that uses the database: that would deadlock).
        """
        if self._tx_owner is asyncio.current_task():
            raise DatabaseError("nested transaction")
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise DatabaseError(f"cannot begin transaction: {exc}") from exc
            self._tx_owner = asyncio.current_task()
            try:
                yield
                await self._conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    await self._conn.execute("ROLLBACK")  # no-op error if COMMIT already ended it
                if isinstance(exc, sqlite3.Error):
                    raise DatabaseError(f"transaction failed: {exc}") from exc
                raise
            finally:
                self._tx_owner = None

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        if self._tx_owner is not None and self._tx_owner is asyncio.current_task():
            yield  # inside our own transaction: the lock is already held
            return
        async with self._lock:
            yield

    async def _write(self, sql: str, params: Iterable[Any]) -> tuple[int | None, int]:
        """Run one statement (committed on return unless inside transaction()): (lastrowid, rowcount)."""
        try:
            async with self._locked(), self._conn.execute(sql, tuple(params)) as cur:
                return cur.lastrowid, cur.rowcount
        except sqlite3.Error as exc:
            raise DatabaseError(f"write failed ({sql.split(' (')[0]}): {exc}") from exc

    async def _insert(self, sql: str, params: Iterable[Any]) -> int:
        rowid, _ = await self._write(sql, params)
        if rowid is None:
            raise DatabaseError(f"insert returned no row id ({sql.split(' (')[0]})")
        return rowid

    async def _update(self, sql: str, params: Iterable[Any], what: str, ident: int) -> None:
        _, count = await self._write(sql, params)
        if count == 0:
            raise DatabaseError(f"{what} {ident} not found")

    async def _select(self, sql: str, convert: Callable[[sqlite3.Row], T]) -> list[T]:
        try:
            async with self._locked(), self._conn.execute(sql) as cur:
                fetched = await cur.fetchall()
        except sqlite3.Error as exc:
            raise DatabaseError(f"read failed ({sql}): {exc}") from exc
        out = []
        for row in fetched:
            try:
                out.append(convert(row))
            except DecodeError as exc:
                ident = row["id"] if "id" in tuple(row.keys()) else "?"  # `in row` would test values
                raise DecodeError(f"{sql.split(' FROM ')[1].split()[0]} row {ident}: {exc}") from exc
        return out

    # --- users --------------------------------------------------------------------------------

    async def load_users(self) -> list[User]:
        # users carry gorm's soft delete: Headscale never sees rows with deleted_at set.
        sql = "SELECT * FROM users WHERE deleted_at IS NULL ORDER BY id"
        return await self._select(sql, rows.user_from_row)

    async def insert_user(self, user: User) -> int:
        return await self._insert(rows.insert_sql("users", rows.USER_COLUMNS), rows.user_params(user))

    async def update_user(self, user: User) -> None:
        sql = rows.update_sql("users", rows.USER_COLUMNS)
        await self._update(sql, (*rows.user_params(user), user.id), "user", user.id)

    async def delete_user(self, id: int) -> None:
        await self._write("DELETE FROM users WHERE id = ?", (id,))

    # --- nodes --------------------------------------------------------------------------------

    async def load_nodes(self) -> list[Node]:
        return await self._select("SELECT * FROM nodes ORDER BY id", rows.node_from_row)

    async def insert_node(self, node: Node) -> int:
        return await self._insert(rows.insert_sql("nodes", rows.NODE_COLUMNS), rows.node_params(node))

    async def update_node(self, node: Node) -> None:
        sql = rows.update_sql("nodes", rows.NODE_COLUMNS)
        await self._update(sql, (*rows.node_params(node), node.id), "node", node.id)

    async def delete_node(self, id: int) -> None:
        await self._write("DELETE FROM nodes WHERE id = ?", (id,))

    # --- pre-auth keys ------------------------------------------------------------------------

    async def load_preauthkeys(self) -> list[PreAuthKey]:
        return await self._select("SELECT * FROM pre_auth_keys ORDER BY id", rows.preauthkey_from_row)

    async def insert_preauthkey(self, key: PreAuthKey) -> int:
        sql = rows.insert_sql("pre_auth_keys", rows.PREAUTHKEY_COLUMNS)
        return await self._insert(sql, rows.preauthkey_params(key))

    async def update_preauthkey(self, key: PreAuthKey) -> None:
        sql = rows.update_sql("pre_auth_keys", rows.PREAUTHKEY_COLUMNS)
        await self._update(sql, (*rows.preauthkey_params(key), key.id), "pre-auth key", key.id)

    async def delete_preauthkey(self, id: int) -> None:
        await self._write("DELETE FROM pre_auth_keys WHERE id = ?", (id,))

    # --- API keys -----------------------------------------------------------------------------

    async def load_apikeys(self) -> list[ApiKey]:
        return await self._select("SELECT * FROM api_keys ORDER BY id", rows.apikey_from_row)

    async def insert_apikey(self, key: ApiKey) -> int:
        return await self._insert(rows.insert_sql("api_keys", rows.APIKEY_COLUMNS), rows.apikey_params(key))

    async def update_apikey(self, key: ApiKey) -> None:
        sql = rows.update_sql("api_keys", rows.APIKEY_COLUMNS)
        await self._update(sql, (*rows.apikey_params(key), key.id), "API key", key.id)

    async def delete_apikey(self, id: int) -> None:
        await self._write("DELETE FROM api_keys WHERE id = ?", (id,))

    # --- policy -------------------------------------------------------------------------------

    async def load_policy(self) -> str | None:
        found = await self._select(
            "SELECT data FROM policies WHERE deleted_at IS NULL ORDER BY id DESC LIMIT 1",
            lambda r: r["data"],
        )
        return None if not found or found[0] is None else str(found[0])

    async def insert_policy(self, text: str) -> int:
        # Headscale keeps every version: `policy set` inserts a row, the highest id is current.
        now = codec.encode_time(datetime.now(UTC))
        sql = "INSERT INTO policies (data, created_at, updated_at) VALUES (?, ?, ?)"
        return await self._insert(sql, (text, now, now))


async def _apply_pragmas(conn: aiosqlite.Connection, wal: bool, autocheckpoint: int) -> None:
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await conn.execute("PRAGMA foreign_keys = ON")
    async with conn.execute(f"PRAGMA journal_mode = {'WAL' if wal else 'DELETE'}") as cur:
        mode = await cur.fetchone()
    if wal and (mode is None or str(mode[0]).lower() != "wal"):
        raise DatabaseError(f"could not switch to write-ahead logging (journal_mode is {mode})")
    # FULL: every commit is fsynced before it returns, so an acknowledged write survives kill -9 and
    # also power loss (NORMAL in WAL mode would only survive a process crash).
    await conn.execute("PRAGMA synchronous = FULL")
    if wal:
        await conn.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint)}")


def _backup_file(src_path: str, dest_path: str) -> None:
    if os.path.realpath(src_path) == os.path.realpath(dest_path):
        raise DatabaseError(f"backup destination {dest_path} is the live database")
    tmp = f"{dest_path}.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    uri = Path(src_path).resolve().as_uri() + "?mode=ro"
    src = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)  # pages=-1: the whole file in one step, one consistent snapshot
            dst.execute("PRAGMA journal_mode = DELETE")  # a self-contained file, no -wal beside it
        finally:
            dst.close()
    except sqlite3.Error as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise DatabaseError(f"backup of {src_path} to {dest_path} failed: {exc}") from exc
    finally:
        src.close()
    for stale in (f"{dest_path}-wal", f"{dest_path}-shm"):
        # a WAL left by an older file at dest_path would be replayed into the new copy
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    os.replace(tmp, dest_path)
