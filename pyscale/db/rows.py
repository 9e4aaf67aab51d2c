"""Record <-> row mapping for the five Headscale tables pyscale reads and writes.

Each table has its written column list (``*_COLUMNS``, without ``id``) and a pair of functions:
``*_params`` gives the values in that order, ``*_from_row`` builds the record from a
``sqlite3.Row``. Columns the model does not carry (``deleted_at``) are never written, so an
update leaves what Headscale put there untouched.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from pyscale.db import codec
from pyscale.keys import DiscoPublic, MachinePublic, NodePublic
from pyscale.state.model import ZERO_TIME, ApiKey, Node, PreAuthKey, User

USER_COLUMNS = (
    "name", "display_name", "email", "provider_identifier", "provider", "profile_pic_url",
    "created_at", "updated_at",
)
PREAUTHKEY_COLUMNS = ("key", "user_id", "reusable", "ephemeral", "used", "tags", "expiration", "created_at")
APIKEY_COLUMNS = ("prefix", "hash", "expiration", "last_seen", "created_at")
NODE_COLUMNS = (
    "machine_key", "node_key", "disco_key", "endpoints", "host_info", "ipv4", "ipv6", "hostname",
    "given_name", "user_id", "register_method", "forced_tags", "auth_key_id", "last_seen", "expiry",
    "approved_routes", "created_at", "updated_at",
)


def user_params(u: User) -> tuple[Any, ...]:
    return (
        u.name, u.display_name, u.email, u.provider_identifier, u.provider, u.profile_pic_url,
        codec.encode_time(u.created_at), codec.encode_time(u.updated_at),
    )


def user_from_row(r: sqlite3.Row) -> User:
    return User(
        id=r["id"],
        name=codec.decode_text(r["name"]),
        display_name=codec.decode_text(r["display_name"]),
        email=codec.decode_text(r["email"]),
        provider_identifier=codec.decode_optional_text(r["provider_identifier"]),
        provider=codec.decode_text(r["provider"]),
        profile_pic_url=codec.decode_text(r["profile_pic_url"]),
        created_at=_required_time(r["created_at"]),
        updated_at=_required_time(r["updated_at"]),
    )


def preauthkey_params(k: PreAuthKey) -> tuple[Any, ...]:
    return (
        k.key, k.user_id, codec.encode_bool(k.reusable), codec.encode_bool(k.ephemeral),
        codec.encode_bool(k.used), codec.encode_str_list(k.tags), codec.encode_time(k.expiration),
        codec.encode_time(k.created_at),
    )


def preauthkey_from_row(r: sqlite3.Row) -> PreAuthKey:
    return PreAuthKey(
        id=r["id"],
        key=codec.decode_text(r["key"]),
        user_id=r["user_id"],
        reusable=codec.decode_bool(r["reusable"]),
        ephemeral=codec.decode_bool(r["ephemeral"]),
        used=codec.decode_bool(r["used"]),
        tags=codec.decode_str_list(r["tags"]),
        expiration=codec.decode_time(r["expiration"]),
        created_at=_required_time(r["created_at"]),
    )


def apikey_params(k: ApiKey) -> tuple[Any, ...]:
    return (
        k.prefix, bytes(k.hash), codec.encode_time(k.expiration), codec.encode_time(k.last_seen),
        codec.encode_time(k.created_at),
    )


def apikey_from_row(r: sqlite3.Row) -> ApiKey:
    return ApiKey(
        id=r["id"],
        prefix=codec.decode_text(r["prefix"]),
        hash=codec.decode_blob(r["hash"]),
        expiration=codec.decode_time(r["expiration"]),
        last_seen=codec.decode_time(r["last_seen"]),
        created_at=_required_time(r["created_at"]),
    )


def node_params(n: Node) -> tuple[Any, ...]:
    return (
        codec.encode_key(n.machine_key, MachinePublic),
        codec.encode_key(n.node_key, NodePublic),
        codec.encode_key(n.disco_key, DiscoPublic),
        codec.encode_str_list(n.endpoints),
        codec.encode_hostinfo(n.hostinfo),
        codec.encode_ip(n.ipv4),
        codec.encode_ip(n.ipv6),
        n.hostname,
        n.given_name,
        n.user_id,
        n.register_method,
        codec.encode_str_list(n.forced_tags),
        n.auth_key_id,
        codec.encode_time(n.last_seen),
        codec.encode_time(n.expiry),
        codec.encode_str_list(n.approved_routes) if n.approved_routes else None,  # gorm writes a nil slice as NULL
        codec.encode_time(n.created_at),
        codec.encode_time(n.updated_at),
    )


def node_from_row(r: sqlite3.Row) -> Node:
    return Node(
        id=r["id"],
        machine_key=codec.decode_key(r["machine_key"], MachinePublic),
        node_key=codec.decode_key(r["node_key"], NodePublic),
        disco_key=codec.decode_optional_key(r["disco_key"], DiscoPublic),
        endpoints=codec.decode_str_list(r["endpoints"]),
        hostinfo=codec.decode_hostinfo(r["host_info"]),
        ipv4=codec.decode_ipv4(r["ipv4"]),
        ipv6=codec.decode_ipv6(r["ipv6"]),
        hostname=codec.decode_text(r["hostname"]),
        given_name=codec.decode_text(r["given_name"]),
        user_id=r["user_id"],
        register_method=codec.decode_text(r["register_method"]),
        forced_tags=codec.decode_str_list(r["forced_tags"]),
        auth_key_id=r["auth_key_id"],
        last_seen=codec.decode_time(r["last_seen"]),
        expiry=codec.decode_time(r["expiry"]),
        approved_routes=codec.decode_str_list(r["approved_routes"]),
        created_at=_required_time(r["created_at"]),
        updated_at=_required_time(r["updated_at"]),
    )


def _required_time(value: Any) -> Any:
    # gorm's CreatedAt/UpdatedAt are non-pointer time.Time: a NULL there reads as the zero time.
    t = codec.decode_time(value)
    return t if t is not None else ZERO_TIME


def insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def update_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"UPDATE {table} SET {', '.join(c + ' = ?' for c in columns)} WHERE id = ?"
