"""``pyscale backup DIR`` / ``pyscale restore DIR``: the database, config, policy and keys, checked.

Backup reads the live database through a second, read-only connection with SQLite's online
backup API in one step, so the copy is one consistent snapshot even while the server commits
registrations (in WAL mode the writer is not blocked). Beside it go the config file, the policy
file and the noise/DERP private keys, and ``manifest.json`` with each file's SHA-256 and the
database's row counts.

Restore refuses while a server answers on the CLI socket or the listen address, checks every
file against the manifest, the database's ``PRAGMA integrity_check`` and its schema (Headscale
v0.27.1's exactly), then swaps each file in atomically, keeping what it replaces as
``*.pre-restore``. Stale ``-wal``/``-shm`` files of the old database are set aside with it: left
in place they would be replayed into the restored file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyscale import __version__
from pyscale.config import Config
from pyscale.netaddr import probe_host_port

MANIFEST = "manifest.json"
DB_NAME = "db.sqlite"
BUSY_TIMEOUT_S = 10.0
COUNTED_TABLES = ("users", "nodes", "pre_auth_keys", "api_keys", "policies")
RUNNING_PROBE_TIMEOUT_S = 1.0


class BackupError(Exception):
    pass


@dataclass
class Manifest:
    version: str
    created_at: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {role, source, sha256, mode}
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_file(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text())
            return cls(data["version"], data["created_at"], data["files"], data["counts"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"{path}: not a pyscale backup manifest: {exc}") from exc


# ---- what a backup holds ---------------------------------------------------------------------


def _sources(cfg: Config, config_path: str | None) -> dict[str, tuple[str, str]]:
    """name in the backup -> (role, path on this machine), for each file that exists."""
    wanted = {
        "config.yaml": ("config", config_path or ""),
        "policy": ("policy", cfg.policy.path),
        "noise_private.key": ("noise_key", cfg.noise.private_key_path),
        "derp_server_private.key": ("derp_key", cfg.derp.server.private_key_path),
    }
    return {name: (role, path) for name, (role, path) in wanted.items() if path and os.path.isfile(path)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- backup ----------------------------------------------------------------------------------


def backup(cfg: Config, config_path: str | None, dest: str) -> Manifest:
    """Write a complete backup into directory ``dest`` (created; must not hold a backup already)."""
    if cfg.database.type not in ("", "sqlite", "sqlite3"):
        raise BackupError("only sqlite databases are backed up by pyscale (use pg_dump for postgres)")
    out = Path(dest)
    if (out / MANIFEST).exists():
        raise BackupError(f"{out} already holds a backup; choose a new directory")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    manifest = Manifest(__version__, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    db_copy = out / DB_NAME
    copy_database(cfg.database.sqlite.path, db_copy)
    manifest.counts = verify_database(db_copy)
    manifest.files[DB_NAME] = _entry("database", cfg.database.sqlite.path, db_copy)
    for name, (role, path) in _sources(cfg, config_path).items():
        target = out / name
        shutil.copyfile(path, target)
        target.chmod(0o600)
        manifest.files[name] = _entry(role, path, target)
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(manifest.to_json())
    os.replace(tmp, out / MANIFEST)  # written last: a manifest means a complete backup
    return manifest


def _entry(role: str, source: str, copy: Path) -> dict[str, Any]:
    return {"role": role, "source": os.path.abspath(source), "sha256": _sha256(copy)}


def copy_database(src: str, dest: Path) -> None:
    """One consistent snapshot of a live database into a self-contained file (no -wal beside it)."""
    if not os.path.isfile(src):
        raise BackupError(f"database {src} does not exist")
    tmp = dest.with_name(dest.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    source = sqlite3.connect(Path(src).resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)  # pages=-1: all pages in one step, hence one snapshot
            target.execute("PRAGMA journal_mode = DELETE")
        finally:
            target.close()
    except sqlite3.Error as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise BackupError(f"backup of {src} failed: {exc}") from exc
    finally:
        source.close()
    tmp.chmod(0o600)
    os.replace(tmp, dest)


def verify_database(path: Path) -> dict[str, int]:
    """integrity_check, foreign keys and Headscale v0.27.1's schema; returns row counts per table."""
    from pyscale.db.schema import schema_diff

    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"{path}: cannot open: {exc}") from exc
    try:
        result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        if result != ["ok"]:
            raise BackupError(f"{path}: integrity_check failed: {'; '.join(result[:5])}")
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise BackupError(f"{path}: {len(broken)} rows break foreign keys (first: {tuple(broken[0])})")
        diff = schema_diff(conn)
        if diff:
            raise BackupError(f"{path}: not Headscale v0.27.1's schema: {'; '.join(diff[:5])}")
        return {t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in COUNTED_TABLES}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: not a usable SQLite database: {exc}") from exc
    finally:
        conn.close()


# ---- restore ---------------------------------------------------------------------------------


def server_running(cfg: Config) -> str | None:
    """What answers (the CLI socket or the listen address) when a server runs, else None."""
    with socket.socket(socket.AF_UNIX) as unix:
        unix.settimeout(RUNNING_PROBE_TIMEOUT_S)
        with contextlib.suppress(OSError):
            unix.connect(cfg.unix_socket)
            return f"unix socket {cfg.unix_socket}"
    with contextlib.suppress(ValueError):
        host, port = probe_host_port(cfg.listen_addr)
        if port > 0:
            with contextlib.suppress(OSError), socket.create_connection((host, port), RUNNING_PROBE_TIMEOUT_S):
                return f"listen address {cfg.listen_addr}"
    return None


def verify_backup(src: str) -> Manifest:
    """Every file present with its recorded SHA-256, the database sound, the keys parseable."""
    from pyscale.keys import KeyError_, PrivateKey

    root = Path(src)
    manifest = Manifest.from_file(root / MANIFEST)
    if DB_NAME not in manifest.files:
        raise BackupError(f"{root}: the manifest lists no database")
    for name, entry in manifest.files.items():
        path = root / name
        if not path.is_file():
            raise BackupError(f"{path}: missing from the backup")
        if _sha256(path) != entry["sha256"]:
            raise BackupError(f"{path}: SHA-256 differs from the manifest (damaged or edited)")
        if entry["role"] in ("noise_key", "derp_key"):
            try:
                PrivateKey.parse(path.read_text().strip())
            except (KeyError_, UnicodeDecodeError) as exc:
                raise BackupError(f"{path}: not a private key file: {exc}") from exc
    counts = verify_database(root / DB_NAME)
    if counts != manifest.counts:
        raise BackupError(f"{root / DB_NAME}: row counts {counts} differ from the manifest's {manifest.counts}")
    return manifest


def restore(cfg: Config, config_path: str | None, src: str) -> list[str]:
    """Put a verified backup in place of the configured files; returns what was restored, where."""
    running = server_running(cfg)
    if running is not None:
        raise BackupError(f"a server is running ({running} answers): stop it first "
                          "(systemctl stop headscale / pyscale)")
    manifest = verify_backup(src)
    targets = {"database": cfg.database.sqlite.path, "config": config_path or "", "policy": cfg.policy.path,
               "noise_key": cfg.noise.private_key_path, "derp_key": cfg.derp.server.private_key_path}
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    done = []
    for name, entry in manifest.files.items():
        target = targets.get(entry["role"]) or entry["source"]
        _put(Path(src) / name, Path(target), stamp, sidecars=entry["role"] == "database")
        done.append(f"{name} -> {target}")
    after = verify_database(Path(cfg.database.sqlite.path))
    if after != manifest.counts:
        raise BackupError(f"restored database counts {after} differ from the backup's {manifest.counts}")
    return done


def _put(src: Path, target: Path, stamp: str, sidecars: bool) -> None:
    """Atomic replace, keeping the old file (and a database's -wal/-shm) as ``*.pre-restore-STAMP``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    owner = target.parent.stat()
    tmp = target.with_name(target.name + ".restore-tmp")
    shutil.copyfile(src, tmp)
    tmp.chmod(0o600 if sidecars or target.name.endswith(".key") else 0o640)
    if os.geteuid() == 0:  # as the runbook's "fix permissions": files belong to the directory's owner
        os.chown(tmp, owner.st_uid, owner.st_gid)
    for suffix in ("", "-wal", "-shm", "-journal") if sidecars else ("",):
        old = target.with_name(target.name + suffix)
        if old.exists():
            os.replace(old, old.with_name(f"{old.name}.pre-restore-{stamp}"))
    os.replace(tmp, target)
