"""kill -9 at an arbitrary point never loses an acknowledged registration, nor corrupts the file.

A child process registers nodes as fast as it can and prints each one after ``insert_node`` (or
the enclosing transaction) returned. The parent SIGKILLs it after a varying number of
acknowledgements, several rounds on the same file, then reopens the file and checks every
acknowledged node is present with its key, that no pre-auth key of a half-done transaction
leaked, and that ``PRAGMA integrity_check`` is ok.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from pyscale.db import Database
from pyscale.db.schema import schema_diff

pytestmark = pytest.mark.asyncio

WRITER = Path(__file__).with_name("crash_writer.py")
REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0


async def _run_and_kill(path: Path, tag: str, after: int) -> dict[int, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WRITER), str(path), tag,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    acked: dict[int, str] = {}
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), DEADLINE_S)
        assert first.startswith(b"user "), first
        while len(acked) < after:
            line = await asyncio.wait_for(proc.stdout.readline(), DEADLINE_S)
            assert line, (await proc.stderr.read()).decode() if proc.stderr else "writer died"
            node_id, key = line.decode().split()
            acked[int(node_id)] = key
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        rest, _ = await asyncio.wait_for(proc.communicate(), DEADLINE_S)
    for line in rest.decode().splitlines():  # acknowledged between our last read and the kill
        node_id, key = line.split()
        acked[int(node_id)] = key
    assert proc.returncode == -signal.SIGKILL
    return acked


async def test_kill_9_loses_no_acknowledged_registration(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    acked: dict[int, str] = {}
    for round_no, after in enumerate((5, 40, 17, 120, 3, 64)):
        acked.update(await _run_and_kill(path, str(round_no), after))
        conn = sqlite3.connect(path)  # a plain reader straight after the crash: recovery must be clean
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()
    db = await Database.open(str(path))
    try:
        nodes = {n.id: n for n in await db.load_nodes()}
        keys = {k.id for k in await db.load_preauthkeys()}
        users = await db.load_users()
    finally:
        await db.close()
    assert len(users) == 6
    missing = [i for i in acked if i not in nodes]
    assert missing == []
    assert all(str(nodes[i].node_key) == key for i, key in acked.items())
    # A key is committed only together with its node: no orphan from an interrupted transaction.
    assert keys == {n.auth_key_id for n in nodes.values() if n.auth_key_id is not None}
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert schema_diff(conn) == []
    finally:
        conn.close()
