"""Domain records held by State and persisted by db/: one dataclass per Headscale table row.

Field names follow Headscale v0.27.1's columns. Times are timezone-aware datetimes; Go's zero
time (``0001-01-01 00:00:00+00:00``, "never expires" for node expiry) is ``ZERO_TIME``, distinct
from ``None`` (SQL NULL), because Headscale stores and shows both differently.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyscale.keys import DiscoPublic, MachinePublic, NodePublic

ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_zero_time(t: datetime | None) -> bool:
    return t is not None and t.year == 1 and t.month == 1 and t.day == 1


@dataclass
class User:
    id: int
    name: str
    display_name: str = ""
    email: str = ""
    provider_identifier: str | None = None
    provider: str = ""
    profile_pic_url: str = ""
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass
class PreAuthKey:
    id: int
    key: str  # 48 lowercase hex chars, stored in plain text (Headscale v0.27.1)
    user_id: int | None
    reusable: bool = False
    ephemeral: bool = False
    used: bool = False
    tags: list[str] = field(default_factory=list)
    expiration: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class ApiKey:
    id: int
    prefix: str
    hash: bytes  # bcrypt of the secret part, "$2a$10$..."
    expiration: datetime | None = None
    last_seen: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class Node:
    id: int
    machine_key: MachinePublic
    node_key: NodePublic
    disco_key: DiscoPublic | None = None
    endpoints: list[str] = field(default_factory=list)
    hostinfo: dict[str, Any] | None = None  # tailcfg.Hostinfo JSON, Go field names
    ipv4: ipaddress.IPv4Address | None = None
    ipv6: ipaddress.IPv6Address | None = None
    hostname: str = ""
    given_name: str = ""
    user_id: int | None = None
    register_method: str = ""  # "authkey" | "cli" | "oidc"
    forced_tags: list[str] = field(default_factory=list)
    auth_key_id: int | None = None
    last_seen: datetime | None = None
    expiry: datetime | None = None  # None = NULL, ZERO_TIME = never
    approved_routes: list[str] = field(default_factory=list)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    def is_expired(self, now: datetime) -> bool:
        return self.expiry is not None and not is_zero_time(self.expiry) and self.expiry <= now

    def is_ephemeral(self, keys: dict[int, PreAuthKey]) -> bool:
        key = keys.get(self.auth_key_id) if self.auth_key_id is not None else None
        return bool(key and key.ephemeral)
