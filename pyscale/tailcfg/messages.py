"""Control-plane request/response bodies (tailscale tailcfg/tailcfg.go), one explicit JSON mapping each.

Requests are parsed leniently: unknown fields are ignored (newer clients add fields), missing
ones take Go's zero value. Responses are emitted with Go's exact field names; ``None`` means
"omit" so deltas stay small. Hostinfo and NetInfo stay plain dicts: the server stores and
forwards them, reading only a few fields through the accessors below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pyscale.keys import DiscoPublic, KeyError_, NodePublic
from pyscale.tailcfg.timefmt import TimeFormatError, format_time, parse_time

JSON = dict[str, Any]


class WireError(ValueError):
    """A request body does not have the shape the protocol requires."""


def _obj(body: Any) -> JSON:
    if not isinstance(body, dict):
        raise WireError("request body must be a JSON object")
    return body


def _node_key(value: Any, name: str) -> NodePublic:
    if value in (None, ""):
        return NodePublic.zero()
    try:
        return NodePublic.parse(str(value))
    except KeyError_ as exc:
        raise WireError(f"{name}: {exc}") from exc


def _time(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return parse_time(str(value))
    except TimeFormatError as exc:
        raise WireError(f"{name}: {exc}") from exc


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    version: int
    node_key: NodePublic
    old_node_key: NodePublic
    auth_key: str | None
    expiry: datetime | None  # None = zero time (no request); 1970-01-01T00:02:03Z = logout
    followup: str
    hostinfo: JSON
    ephemeral: bool

    @classmethod
    def from_json(cls, body: Any) -> RegisterRequest:
        d = _obj(body)
        auth = d.get("Auth")
        auth_key = auth.get("AuthKey") if isinstance(auth, dict) else None
        expiry = _time(d.get("Expiry"), "Expiry")
        if expiry is not None and expiry.year == 1:
            expiry = None
        return cls(
            version=int(d.get("Version") or 0),
            node_key=_node_key(d.get("NodeKey"), "NodeKey"),
            old_node_key=_node_key(d.get("OldNodeKey"), "OldNodeKey"),
            auth_key=str(auth_key) if auth_key else None,
            expiry=expiry,
            followup=str(d.get("Followup") or ""),
            hostinfo=_dict(d.get("Hostinfo")),
            ephemeral=bool(d.get("Ephemeral")),
        )


@dataclass(frozen=True, slots=True)
class UserProfile:
    id: int
    login_name: str
    display_name: str
    profile_pic_url: str = ""

    def to_json(self) -> JSON:
        return {
            "ID": self.id,
            "LoginName": self.login_name,
            "DisplayName": self.display_name,
            "ProfilePicURL": self.profile_pic_url,
        }


@dataclass(frozen=True, slots=True)
class RegisterResponse:
    user: UserProfile | None = None
    created: datetime | None = None
    node_key_expired: bool = False
    machine_authorized: bool = False
    auth_url: str = ""
    error: str = ""

    def to_json(self) -> JSON:
        out: JSON = {}
        if self.user is not None:
            u = self.user
            out["User"] = {
                "ID": u.id,
                "DisplayName": u.display_name,
                "ProfilePicURL": u.profile_pic_url,
                "Created": format_time(self.created),
            }
            out["Login"] = {
                "ID": u.id,
                "Provider": "",
                "LoginName": u.login_name,
                "DisplayName": u.display_name,
                "ProfilePicURL": u.profile_pic_url,
            }
        out["NodeKeyExpired"] = self.node_key_expired
        out["MachineAuthorized"] = self.machine_authorized
        out["AuthURL"] = self.auth_url
        if self.error:
            out["Error"] = self.error
        return out


@dataclass(frozen=True, slots=True)
class MapRequest:
    version: int
    node_key: NodePublic
    disco_key: DiscoPublic | None
    stream: bool
    omit_peers: bool
    compress: str
    keep_alive: bool
    hostinfo: JSON | None
    endpoints: list[str]

    @classmethod
    def from_json(cls, body: Any) -> MapRequest:
        d = _obj(body)
        disco = d.get("DiscoKey")
        try:
            disco_key = DiscoPublic.parse(disco) if disco else None
        except KeyError_ as exc:
            raise WireError(f"DiscoKey: {exc}") from exc
        endpoints = d.get("Endpoints") or []
        return cls(
            version=int(d.get("Version") or 0),
            node_key=_node_key(d.get("NodeKey"), "NodeKey"),
            disco_key=None if disco_key is None or disco_key.is_zero() else disco_key,
            stream=bool(d.get("Stream")),
            omit_peers=bool(d.get("OmitPeers")),
            compress=str(d.get("Compress") or ""),
            keep_alive=bool(d.get("KeepAlive")),
            hostinfo=d["Hostinfo"] if isinstance(d.get("Hostinfo"), dict) else None,
            endpoints=[str(e) for e in endpoints if isinstance(e, str)],
        )

    @property
    def is_lite_update(self) -> bool:
        return not self.stream and self.omit_peers


def preferred_derp(hostinfo: JSON | None) -> int:
    net = _dict((hostinfo or {}).get("NetInfo"))
    value = net.get("PreferredDERP")
    return value if isinstance(value, int) else 0


@dataclass(slots=True)
class MapResponse:
    """One message on the map stream; fields left at None are omitted (= unchanged)."""

    keep_alive: bool | None = None
    node: JSON | None = None
    peers: list[JSON] | None = None
    peers_changed: list[JSON] | None = None
    peers_removed: list[int] | None = None
    peers_changed_patch: list[JSON] | None = None
    derp_map: JSON | None = None
    dns_config: JSON | None = None
    packet_filters: dict[str, Any] | None = None
    user_profiles: list[JSON] | None = None
    domain: str | None = None
    collect_services: bool | None = None
    ssh_policy: JSON | None = None
    debug: JSON | None = None
    control_time: datetime | None = None
    extra: JSON = field(default_factory=dict)
    # Pre-encoded node JSON (shared by every viewer with the same capability version), spliced in by
    # encode() instead of re-serialising thousands of identical peers for every session.
    peers_raw: list[bytes] | None = None
    peers_changed_raw: list[bytes] | None = None

    _NAMES = (
        ("keep_alive", "KeepAlive"), ("node", "Node"), ("derp_map", "DERPMap"), ("peers", "Peers"),
        ("peers_changed", "PeersChanged"), ("peers_removed", "PeersRemoved"),
        ("peers_changed_patch", "PeersChangedPatch"), ("dns_config", "DNSConfig"),
        ("domain", "Domain"), ("collect_services", "CollectServices"),
        ("packet_filters", "PacketFilters"), ("user_profiles", "UserProfiles"),
        ("ssh_policy", "SSHPolicy"), ("debug", "Debug"),
    )

    def to_json(self) -> JSON:
        out: JSON = {}
        for attr, name in self._NAMES:
            value = getattr(self, attr)
            if value is not None:
                out[name] = value
        if self.control_time is not None:
            out["ControlTime"] = format_time(self.control_time)
        out.update(self.extra)
        return out

    def encode(self) -> bytes:
        """Compact JSON bytes of this message, raw peer fragments included."""
        head = json.dumps(self.to_json(), separators=(",", ":")).encode()
        parts = [b'"%s":[%s]' % (name, b",".join(raw)) for name, raw in
                 ((b"Peers", self.peers_raw), (b"PeersChanged", self.peers_changed_raw)) if raw is not None]
        if not parts:
            return head
        inner = head[1:-1]
        return b"{" + b",".join([*parts, inner] if inner else parts) + b"}"
