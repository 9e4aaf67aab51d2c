"""Bring an older Headscale SQLite database to v0.27.1's shape, faithfully, or leave it untouched.

Headscale runs its gormigrate migrations in order and records each id in `migrations`; this
module replays the same steps for every id the file lacks, in Headscale's order, inside ONE
transaction with foreign keys off (the table rebuild needs that, as in Headscale). Where
Headscale relies on gorm's AutoMigrate (add missing columns and tables), the step adds exactly
those columns. The three v0.27 steps are plain SQL in ``../migrations`` (append-only files).

Before COMMIT the result must pass what headscale v0.27.1 checks at start (``PRAGMA
foreign_key_check`` empty, the squibble schema check) plus ``PRAGMA integrity_check``; any failure
rolls everything back, so a refused file is byte-for-byte what it was. Before migrating, a copy
of the original is written beside it with SQLite's backup API.

Deliberate differences from Headscale, each safer and invisible to headscale v0.27.1:
- tags folded from `pre_auth_key_acl_tags` are sorted (Headscale's order is Go map order);
- an empty `ip_addresses` value yields no address instead of failing the whole migration;
- `sqlite_sequence` keeps its high-water marks across the rebuild, so deleted ids are not reused;
- 202505141324 rewrites `provider_identifier` only where cleaning changes it (gorm's Save also
  bumped every user's `updated_at`).
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pyscale.db import codec
from pyscale.db.errors import DatabaseError
from pyscale.db.schema import MIGRATION_IDS_V0_27_1, schema_diff, split_statements

# The SQL steps live in ../migrations (append-only); pyscale/db/ holds symlinks to them so that a
# non-editable install (package data `db/*.sql`) ships them too. A source checkout reads either.
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"

# What gorm's AutoMigrate would add for v0.27.1's structs (column -> declared type).
_COLUMNS: dict[str, dict[str, str]] = {
    "users": {
        "name": "text", "display_name": "text", "email": "text", "provider_identifier": "text",
        "provider": "text", "profile_pic_url": "text", "created_at": "datetime", "updated_at": "datetime",
        "deleted_at": "datetime",
    },
    "pre_auth_keys": {
        "key": "text", "user_id": "integer", "reusable": "numeric", "ephemeral": "numeric DEFAULT false",
        "used": "numeric DEFAULT false", "tags": "text", "expiration": "datetime", "created_at": "datetime",
    },
    "api_keys": {
        "prefix": "text", "hash": "blob", "expiration": "datetime", "last_seen": "datetime",
        "created_at": "datetime",
    },
    "nodes": {
        "machine_key": "text", "node_key": "text", "disco_key": "text", "endpoints": "text",
        "host_info": "text", "ipv4": "text", "ipv6": "text", "hostname": "text", "given_name": "varchar(63)",
        "user_id": "integer", "register_method": "text", "forced_tags": "text", "auth_key_id": "integer",
        "last_seen": "datetime", "expiry": "datetime", "approved_routes": "text", "created_at": "datetime",
        "updated_at": "datetime", "deleted_at": "datetime",
    },
    "policies": {
        "data": "text", "created_at": "datetime", "updated_at": "datetime", "deleted_at": "datetime",
    },
}

_ROUTES_TABLE = (
    "CREATE TABLE routes (id integer PRIMARY KEY AUTOINCREMENT, created_at datetime, updated_at datetime,"
    " deleted_at datetime, node_id integer, prefix text, advertised numeric, enabled numeric,"
    " is_primary numeric)"
)


class MigrationFailed(DatabaseError):
    """A step could not be applied faithfully; the transaction was rolled back."""


@dataclass
class Migration:
    conn: sqlite3.Connection
    applied: list[str] = field(default_factory=list)

    # --- shape helpers ------------------------------------------------------------------------

    def tables(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}

    def has_table(self, table: str) -> bool:
        return table in self.tables()

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.conn.execute(f'PRAGMA table_info("{table}")')]

    def rename_table(self, old: str, new: str) -> None:
        if self.has_table(old) and not self.has_table(new):
            self.conn.execute(f'ALTER TABLE "{old}" RENAME TO "{new}"')

    def rename_column(self, table: str, old: str, new: str) -> None:
        if self.has_table(table):
            cols = self.columns(table)
            if old in cols and new not in cols:
                self.conn.execute(f'ALTER TABLE "{table}" RENAME COLUMN "{old}" TO "{new}"')

    def ensure_columns(self, table: str) -> None:
        """gorm AutoMigrate: create the table or add the columns v0.27.1's struct has and it lacks."""
        wanted = _COLUMNS[table]
        if not self.has_table(table):
            cols = ", ".join(f"{name} {decl}" for name, decl in wanted.items())
            self.conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY AUTOINCREMENT, {cols})")
            return
        have = set(self.columns(table))
        for name, decl in wanted.items():
            if name not in have:
                self.conn.execute(f'ALTER TABLE "{table}" ADD COLUMN {name} {decl}')

    def run_sql_file(self, name: str) -> None:
        for statement in split_statements(read_migration(name)):
            self.conn.execute(statement)


def read_migration(name: str) -> str:
    packaged = resources.files("pyscale.db").joinpath(name)
    try:
        return packaged.read_text(encoding="utf-8")
    except OSError:
        pass
    try:
        return (MIGRATIONS_DIR / name).read_text(encoding="utf-8")
    except OSError as exc:
        raise MigrationFailed(f"pyscale migration file {name} is missing from the installation: {exc}") from exc


# --- the steps, named after the Headscale migration ids they replay -----------------------------


def _m202312101416(m: Migration) -> None:
    """Everything up to 0.23.0: namespaces->users, machines->nodes, renamed columns, key prefixes."""
    m.rename_table("namespaces", "users")
    m.rename_table("machines", "nodes")
    m.rename_column("routes", "machine_id", "node_id")
    for table in ("nodes", "pre_auth_keys"):
        m.rename_column(table, "namespace_id", "user_id")
    m.rename_column("nodes", "ip_address", "ip_addresses")
    m.rename_column("nodes", "name", "hostname")
    m.rename_column("nodes", "nickname", "given_name")
    m.ensure_columns("users")
    if not m.has_table("nodes"):
        return  # not even a machines table: nothing else to carry over (the rebuild creates it)
    m.conn.execute("UPDATE nodes SET auth_key_id = NULL WHERE auth_key_id = 0")
    if "registered" in m.columns("nodes"):
        m.conn.execute("DELETE FROM nodes WHERE NOT registered")  # never-completed registrations
        m.conn.execute("ALTER TABLE nodes DROP COLUMN registered")
    if m.has_table("routes"):
        m.conn.execute("DELETE FROM routes WHERE node_id NOT IN (SELECT id FROM nodes)")
    m.ensure_columns("nodes")
    _prefix_keys(m)
    if "enabled_routes" in m.columns("nodes"):
        _enabled_routes_to_table(m)
    m.conn.execute(
        "UPDATE nodes SET given_name = hostname"
        " WHERE (given_name IS NULL OR given_name = '') AND hostname IS NOT NULL AND hostname != ''"
    )
    m.ensure_columns("pre_auth_keys")
    m.conn.execute("DROP TABLE IF EXISTS shared_machines")
    m.ensure_columns("api_keys")


def _prefix_keys(m: Migration) -> None:
    for column, prefix in (("machine_key", "mkey:"), ("node_key", "nodekey:"), ("disco_key", "discokey:")):
        m.conn.execute(
            f"UPDATE nodes SET {column} = ? || {column}"
            f" WHERE {column} IS NOT NULL AND {column} != '' AND substr({column}, 1, ?) != ?",
            (prefix, len(prefix), prefix),
        )


def _enabled_routes_to_table(m: Migration) -> None:
    if not m.has_table("routes"):
        m.conn.execute(_ROUTES_TABLE)
    now = codec.encode_time(datetime.now(UTC))
    for node_id, raw in m.conn.execute("SELECT id, enabled_routes FROM nodes").fetchall():
        for prefix in _json_strings(raw, f"nodes.enabled_routes of node {node_id}"):
            exists = m.conn.execute(
                "SELECT 1 FROM routes WHERE node_id = ? AND prefix = ? AND deleted_at IS NULL",
                (node_id, prefix),
            ).fetchone()
            if exists is None:
                m.conn.execute(
                    "INSERT INTO routes (created_at, updated_at, node_id, prefix, advertised, enabled,"
                    " is_primary) VALUES (?, ?, ?, ?, 1, 1, 0)",
                    (now, now, node_id, prefix),
                )
    m.conn.execute("ALTER TABLE nodes DROP COLUMN enabled_routes")


def _m202312101430(m: Migration) -> None:
    m.conn.execute("DROP TABLE IF EXISTS kvs")


def _m202402151347(m: Migration) -> None:
    if m.has_table("nodes") and "last_successful_update" in m.columns("nodes"):
        m.conn.execute("ALTER TABLE nodes DROP COLUMN last_successful_update")


def _m2024041121742(m: Migration) -> None:
    """The comma-separated `ip_addresses` becomes `ipv4` + `ipv6` (first address of each family)."""
    if not m.has_table("nodes") or "ip_addresses" not in m.columns("nodes"):
        return
    m.ensure_columns("nodes")
    for node_id, raw in m.conn.execute("SELECT id, ip_addresses FROM nodes").fetchall():
        v4: str | None = None
        v6: str | None = None
        for text in codec.decode_text(raw).split(","):
            if not text.strip():
                continue
            try:
                addr = ipaddress.ip_address(text.strip())
            except ValueError as exc:
                raise MigrationFailed(f"node {node_id}: bad address {text!r} in ip_addresses") from exc
            if addr.version == 4 and v4 is None:
                v4 = str(addr)
            elif addr.version == 6 and v6 is None:
                v6 = str(addr)
        if v4 is not None:
            m.conn.execute("UPDATE nodes SET ipv4 = ? WHERE id = ?", (v4, node_id))
        if v6 is not None:
            m.conn.execute("UPDATE nodes SET ipv6 = ? WHERE id = ?", (v6, node_id))
    m.conn.execute("ALTER TABLE nodes DROP COLUMN ip_addresses")


def _m202406021630(m: Migration) -> None:
    m.ensure_columns("policies")


def _m202409271400(m: Migration) -> None:
    """Pre-auth key tags move from `pre_auth_key_acl_tags` rows onto `pre_auth_keys.tags` (JSON)."""
    if not m.has_table("pre_auth_key_acl_tags"):
        return
    tags: dict[int, set[str]] = {}
    for key_id, tag in m.conn.execute("SELECT pre_auth_key_id, tag FROM pre_auth_key_acl_tags"):
        tags.setdefault(key_id, set()).add(tag)
    m.ensure_columns("pre_auth_keys")
    for key_id, found in tags.items():
        text = codec.encode_json(sorted(found))
        m.conn.execute("UPDATE pre_auth_keys SET tags = ? WHERE id = ?", (text, key_id))
    m.conn.execute("DROP TABLE pre_auth_key_acl_tags")


def _m_users(m: Migration) -> None:
    """202407191627 / 202408181235: the OIDC user columns (indexes come with the rebuild)."""
    m.ensure_columns("users")


def _m202501221827(m: Migration) -> None:
    if m.has_table("routes") and m.has_table("nodes"):
        m.conn.execute("DELETE FROM routes WHERE node_id NOT IN (SELECT id FROM nodes)")
    if m.has_table("routes"):
        m.conn.execute("DELETE FROM routes WHERE node_id IS NULL")


def _m202502070949(m: Migration) -> None:
    if m.has_table("pre_auth_keys") and m.has_table("nodes"):
        m.conn.execute(
            "UPDATE nodes SET auth_key_id = NULL"
            " WHERE auth_key_id IS NOT NULL AND auth_key_id NOT IN (SELECT id FROM pre_auth_keys)"
        )


def _m202502131714(m: Migration) -> None:
    """Enabled routes of the `routes` table become `nodes.approved_routes` (sorted, deduplicated)."""
    if not m.has_table("nodes"):
        return
    m.ensure_columns("nodes")
    if not m.has_table("routes"):
        return
    per_node: dict[int, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]] = {}
    rows = m.conn.execute("SELECT node_id, prefix, enabled FROM routes WHERE deleted_at IS NULL ORDER BY id")
    for node_id, prefix, enabled in rows.fetchall():
        if not codec.decode_bool(enabled):
            continue
        try:
            per_node.setdefault(node_id, []).append(ipaddress.ip_interface(codec.decode_text(prefix)))
        except ValueError as exc:
            raise MigrationFailed(f"route of node {node_id}: unparseable prefix {prefix!r}") from exc
    for node_id, prefixes in per_node.items():
        # tsaddr.SortPrefixes: IPv4 before IPv6, then by address, then by prefix length.
        ordered = sorted(set(prefixes), key=lambda p: (p.version, int(p.ip), p.network.prefixlen))
        text = codec.encode_json([str(p) for p in ordered])
        m.conn.execute("UPDATE nodes SET approved_routes = ? WHERE id = ?", (text, node_id))
    m.conn.execute("DROP TABLE routes")


def _m_last_seen(m: Migration) -> None:
    """202505091439: last_seen is back (202502171819 had dropped it for some beta testers)."""
    if m.has_table("nodes"):
        m.ensure_columns("nodes")


def _m202505141324(m: Migration) -> None:
    rows = m.conn.execute(
        "SELECT id, provider_identifier FROM users"
        " WHERE deleted_at IS NULL AND provider_identifier IS NOT NULL"
    ).fetchall()
    for user_id, ident in rows:
        cleaned = clean_identifier(codec.decode_text(ident))
        if cleaned != ident:
            m.conn.execute("UPDATE users SET provider_identifier = ? WHERE id = ?", (cleaned, user_id))


def _m202507021200(m: Migration) -> None:
    for table in _COLUMNS:
        m.ensure_columns(table)
    sequences = dict(m.conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    m.run_sql_file("0001_headscale_202507021200_rebuild_tables.sql")
    for table in _COLUMNS:
        old = sequences.get(table)
        if old is None:
            continue
        m.conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
        m.conn.execute(
            f"INSERT INTO sqlite_sequence (name, seq) SELECT ?, max(?, coalesce(max(id), 0)) FROM {table}",
            (table, old),
        )


def _m202510311551(m: Migration) -> None:
    m.run_sql_file("0002_headscale_202510311551_drop_legacy_tables.sql")


def _m202511101554(m: Migration) -> None:
    m.run_sql_file("0003_headscale_202511101554_drop_old_indexes.sql")


def _noop(m: Migration) -> None:
    """Constraint-only AutoMigrates; the rebuild gives every table its v0.27.1 constraints."""


STEPS: dict[str, Callable[[Migration], None]] = {
    "202312101416": _m202312101416,
    "202312101430": _m202312101430,
    "202402151347": _m202402151347,
    "2024041121742": _m2024041121742,
    "202406021630": _m202406021630,
    "202409271400": _m202409271400,
    "202407191627": _m_users,
    "202408181235": _m_users,
    "202501221827": _m202501221827,
    "202501311657": _noop,
    "202502070949": _m202502070949,
    "202502131714": _m202502131714,
    "202502171819": _noop,
    "202505091439": _m_last_seen,
    "202505141324": _m202505141324,
    "202507021200": _m202507021200,
    "202510311551": _m202510311551,
    "202511101554-drop-old-idx": _m202511101554,
}
assert tuple(STEPS) == MIGRATION_IDS_V0_27_1


def migrate(conn: sqlite3.Connection, present_ids: tuple[str, ...]) -> list[str]:
    """Apply every step whose id is missing, verify, commit. Returns the ids applied.

    ``conn`` must be in autocommit mode (isolation_level=None) and outside a transaction.
    """
    conn.execute("PRAGMA foreign_keys = OFF")  # must be set outside the transaction
    m = Migration(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not m.has_table("migrations"):
            conn.execute("CREATE TABLE migrations(id text,PRIMARY KEY(id))")
        for step_id, step in STEPS.items():
            if step_id in present_ids:
                continue
            step(m)
            conn.execute("INSERT OR IGNORE INTO migrations (id) VALUES (?)", (step_id,))
            m.applied.append(step_id)
        _verify(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return m.applied


def _verify(conn: sqlite3.Connection) -> None:
    violations = conn.execute("PRAGMA foreign_key_check").fetchall()
    if violations:
        shown = ", ".join(f"{t} row {r} -> {p}" for t, r, p, _ in violations[:5])
        raise MigrationFailed(f"foreign key constraints violated ({len(violations)} rows): {shown}")
    problems = schema_diff(conn)
    if problems:
        raise MigrationFailed(f"schema after migration differs from v0.27.1: {'; '.join(problems)}")
    check = conn.execute("PRAGMA integrity_check").fetchall()
    if check != [("ok",)]:
        raise MigrationFailed(f"integrity check failed after migration: {check[:3]}")


def clean_identifier(identifier: str) -> str:
    """types.CleanIdentifier: collapse empty / whitespace-only path segments, lower-case the scheme."""
    if identifier == "":
        return identifier
    identifier = identifier.strip()
    parts = urlsplit(identifier)
    if parts.scheme:
        segments = [s.strip() for s in parts.path.split("/")]
        path = "/" + "/".join(s for s in segments if s) if any(segments) else ""
        return urlunsplit((parts.scheme.lower(), parts.netloc, path, parts.query, parts.fragment))
    return "/".join(s.strip() for s in identifier.split("/") if s.strip())


def _json_strings(raw: object, what: str) -> list[str]:
    text = codec.decode_text(raw).strip()
    if not text or text == "null":
        return []
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise MigrationFailed(f"{what} is not JSON: {text[:40]!r}") from exc
    if not isinstance(data, list):
        raise MigrationFailed(f"{what} is not a JSON array: {text[:40]!r}")
    return [str(x) for x in data]
