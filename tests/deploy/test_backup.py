"""Backup and restore against a live `pyscale serve` taking writes, and the user's cron line.

The load is a thread creating users and pre-auth keys through the server's API (each one a
committed write) for the whole time a backup runs; the backup must be one consistent snapshot
(integrity_check, foreign keys, counts in its manifest) and a restore must give back exactly
the rows it holds.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyscale.cli.client import ApiClient
from tests.interop.harness import PyscaleServer, wait_until


class WriteLoad:
    """Users and pre-auth keys created back to back over the CLI socket until stopped."""

    def __init__(self, unix_socket: str | Path, prefix: str) -> None:
        self.client = ApiClient(str(unix_socket), timeout=10)
        self.prefix = prefix
        self.count = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WriteLoad:
        self._thread.start()
        wait_until("writes under way", lambda: self.count >= 5, timeout=30)
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                user = self.client.call("POST", "/api/v1/user", {"name": f"{self.prefix}{self.count}"})["user"]
                self.client.call("POST", "/api/v1/preauthkey", {"user": str(user["id"]), "reusable": True,
                                                                "expiration": "2099-01-01T00:00:00Z"})
                self.count += 1
        except BaseException as exc:  # surfaced by __exit__
            self.errors.append(exc)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self.errors, self.errors


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PyscaleServer]:
    srv = PyscaleServer(tmp_path).start()
    try:
        yield srv
    finally:
        srv.stop()


def _users(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as conn:
        return [tuple(r) for r in conn.execute("SELECT id, name FROM users WHERE deleted_at IS NULL ORDER BY id")]


def _api_users(srv: PyscaleServer) -> list[tuple[int, str]]:
    return sorted((int(u["id"]), u["name"]) for u in srv.cli_json("users", "list"))


def test_backup_under_load_then_restore(server: PyscaleServer, tmp_path: Path) -> None:
    dest = tmp_path / "backup-1"
    with WriteLoad(server.root / "pyscale.sock", "load") as load:
        before = load.count
        res = server.cli("backup", str(dest))
        during = load.count - before
        wait_until("more writes after the backup", lambda: load.count >= before + during + 5, timeout=30)
    assert during > 0, "no write happened while the backup ran: the test proves nothing"
    assert {p.name for p in dest.iterdir()} == {"manifest.json", "db.sqlite", "config.yaml",
                                                "noise_private.key", "derp_server_private.key"}
    assert "backup written" in res.stdout
    backed_up = _users(dest / "db.sqlite")
    assert 0 < len(backed_up) < load.count  # a snapshot from the middle of the load
    with sqlite3.connect(dest / "db.sqlite") as conn:  # every key's user is in the same snapshot
        keys = conn.execute("SELECT COUNT(*) FROM pre_auth_keys").fetchone()[0]
        assert keys in (len(backed_up), len(backed_up) - 1)  # a user's key is the next write
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []

    refused = server.cli("restore", str(dest), check=False)
    assert refused.returncode == 1 and "a server is running" in refused.stderr

    noise_key = (server.root / "noise_private.key").read_text()
    server.stop()
    (server.root / "noise_private.key").write_text("garbage")
    restored = server.cli("restore", str(dest))
    assert "db.sqlite ->" in restored.stdout
    assert (server.root / "noise_private.key").read_text() == noise_key
    assert list(server.root.glob("db.sqlite.pre-restore-*"))
    server.start()
    assert _api_users(server) == backed_up


def test_restore_refuses_a_damaged_backup(server: PyscaleServer, tmp_path: Path) -> None:
    server.cli("users", "create", "alice")
    dest = tmp_path / "b"
    server.cli("backup", str(dest))
    server.stop()
    assert server.cli("restore", "--verify-only", str(dest)).returncode == 0
    data = bytearray((dest / "db.sqlite").read_bytes())
    data[-100] ^= 0xFF
    (dest / "db.sqlite").write_bytes(bytes(data))
    db_before = (server.root / "db.sqlite").read_bytes()
    res = server.cli("restore", str(dest), check=False)
    assert res.returncode == 1 and "SHA-256 differs" in res.stderr
    assert (server.root / "db.sqlite").read_bytes() == db_before
    again = server.cli("backup", str(dest), check=False)
    assert again.returncode == 1 and "already holds a backup" in again.stderr


def _cron_backup(db: Path, out: Path) -> None:
    """The runbook's cron line; Python's sqlite3 backup when the sqlite3 shell is missing."""
    if shutil.which("sqlite3"):
        res = subprocess.run(["sqlite3", str(db), f".backup {out}"], capture_output=True, text=True, timeout=60)
        assert (res.returncode, res.stderr) == (0, "")
    else:
        src, dst = sqlite3.connect(db), sqlite3.connect(out)
        src.backup(dst)
        src.close()
        dst.close()


def test_users_cron_line_on_a_live_database(server: PyscaleServer, tmp_path: Path) -> None:
    with WriteLoad(server.root / "pyscale.sock", "cron") as load:
        for i in range(3):
            _cron_backup(server.root / "db.sqlite", tmp_path / f"headscale_{i}.db")
        count_at_end = load.count
        wait_until("the server still commits after the backups", lambda: load.count >= count_at_end + 5, timeout=30)
    for i in range(3):
        out = tmp_path / f"headscale_{i}.db"
        with sqlite3.connect(out) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert len(_users(out)) > 0
    assert server.cli("restore", "--verify-only", str(tmp_path), check=False).returncode == 1  # no manifest
    assert len(_api_users(server)) == load.count


def test_backup_cli_is_registered() -> None:
    res = subprocess.run([sys.executable, "-m", "pyscale.cli.main", "backup", "--help"], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0 and "directory" in res.stdout
