"""Builds MapResponses for one viewer from State: the full map and the wire form of nodes.

The wire form of a node (tailcfg.Node) is cached per (node id, node version, viewer capver)
so a change fanned out to N sessions is built once, not N times. Field choices follow
Headscale v0.27.1's mapper (hscontrol/mapper/tail.go): DERP/HomeDERP from the node's
NetInfo, LastSeen only while offline, CapMap with the three default capabilities.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyscale.keys import DiscoPublic
from pyscale.mapper.policyhook import AllowAll, FilterSource
from pyscale.state.model import Node, utcnow
from pyscale.state.store import State
from pyscale.tailcfg.messages import JSON, MapResponse, UserProfile, preferred_derp
from pyscale.tailcfg.timefmt import format_time

EXIT_ROUTES = {"0.0.0.0/0", "::/0"}
DEFAULT_CAPS = (
    "https://tailscale.com/cap/file-sharing",
    "https://tailscale.com/cap/is-admin",
    "https://tailscale.com/cap/ssh",
)


@dataclass
class MapContext:
    """Everything a map needs besides State; built once from Config by the app."""

    domain: str  # host part of server_url (MapResponse.Domain)
    base_domain: str
    dns_config: JSON
    derp_map: Callable[[], JSON]
    disable_logtail: bool = True
    randomize_client_port: bool = False
    policy: FilterSource = field(default_factory=AllowAll)


def announced_routes(node: Node) -> list[str]:
    routes = (node.hostinfo or {}).get("RoutableIPs") or []
    return [str(r) for r in routes if isinstance(r, str)]


def served_routes(node: Node) -> list[str]:
    """Routes the node both announces and has approved (in approved order): what it may route."""
    announced = set(announced_routes(node)) if node.approved_routes else set()
    return [r for r in node.approved_routes if r in announced]


class Mapper:
    def __init__(self, state: State, ctx: MapContext) -> None:
        self.state = state
        self.ctx = ctx
        # (node id, viewer capver) -> (node version, online, wire dict, its encoded JSON or None);
        # (node id, capver) -> (what the wire form depends on, wire dict, its JSON or None). The key
        # covers the node's version and everything outside the node record that shows in it (online,
        # expired, primary routes), so one entry per node and capver is replaced, never stale.
        self._cache: dict[tuple[int, int], tuple[tuple[Any, ...], JSON, bytes | None]] = {}

    # ---- nodes ---------------------------------------------------------------------------

    def fqdn(self, node: Node) -> str:
        return f"{node.given_name}.{self.ctx.base_domain}." if self.ctx.base_domain else node.given_name

    def primary_routes(self, node: Node) -> list[str]:
        """Subnet routes this node serves as primary: announced, approved, and no lower-id online twin."""
        if not node.approved_routes or not self.state.is_online(node.id):
            return []  # only connected nodes serve routes (Headscale fails over on disconnect)
        primaries = []
        for route in sorted(set(served_routes(node)) - EXIT_ROUTES):
            rivals = [n.id for n in self.state.nodes.values() if self.state.is_online(n.id)
                      and route in served_routes(n)]
            if min(rivals) == node.id:
                primaries.append(route)
        return primaries

    def _entry(self, node: Node, cap: int) -> tuple[tuple[Any, ...], JSON, bytes | None]:
        online, primaries = self.state.is_online(node.id), self.primary_routes(node)
        depends = (self.state.node_versions.get(node.id, 0), online, node.is_expired(utcnow()), primaries)
        entry = self._cache.get((node.id, cap))
        if entry is None or entry[0] != depends:
            entry = self._cache[(node.id, cap)] = (depends, self._build_node(node, cap, online, primaries), None)
        return entry

    def wire_node(self, node: Node, cap: int) -> JSON:
        return self._entry(node, cap)[1]

    def wire_node_bytes(self, node: Node, cap: int) -> bytes:
        """The compact JSON of wire_node, encoded once per node version and shared by all viewers."""
        depends, wire, encoded = self._entry(node, cap)
        if encoded is None:
            encoded = json.dumps(wire, separators=(",", ":")).encode()
            self._cache[(node.id, cap)] = (depends, wire, encoded)
        return encoded

    def reconfigure(self, *, dns_config: JSON, base_domain: str) -> None:
        """A live config reload: node names may change with the base domain, so nothing cached stays."""
        self.ctx.dns_config, self.ctx.base_domain = dns_config, base_domain
        self._cache.clear()

    def _build_node(self, node: Node, cap: int, online: bool, primaries: list[str]) -> JSON:
        addresses = [f"{a}/{a.max_prefixlen}" for a in (node.ipv4, node.ipv6) if a is not None]
        exits = sorted(set(served_routes(node)) & EXIT_ROUTES)
        allowed = addresses + sorted(primaries + exits, key=_prefix_sort_key)
        derp = preferred_derp(node.hostinfo)
        expired = node.is_expired(utcnow())
        wire: JSON = {
            "ID": node.id,
            "StableID": str(node.id),
            "Name": self.fqdn(node),
            "User": node.user_id or 0,
            "Key": str(node.node_key),
            "KeyExpiry": format_time(node.expiry),
            "Machine": str(node.machine_key),
            "DiscoKey": str(node.disco_key or DiscoPublic.zero()),
            "Addresses": addresses,
            "AllowedIPs": allowed,
            "Endpoints": list(node.endpoints),
            "DERP": f"127.3.3.40:{derp}",
            "HomeDERP": derp,
            "Hostinfo": node.hostinfo or {"Hostname": node.hostname},
            "Created": format_time(node.created_at),
            "Cap": cap,
            "Tags": sorted(node.forced_tags),
            "PrimaryRoutes": primaries,
            "Online": online,
            "MachineAuthorized": not expired,
            "Expired": expired,
            "CapMap": self._cap_map(),
        }
        if not online and node.last_seen is not None:
            wire["LastSeen"] = format_time(node.last_seen)
        return wire

    def _cap_map(self) -> dict[str, list[Any]]:
        caps: dict[str, list[Any]] = {c: [] for c in DEFAULT_CAPS}
        if self.ctx.randomize_client_port:
            caps["randomize-client-port"] = []
        return caps

    def forget(self, node_id: int) -> None:
        for key in [k for k in self._cache if k[0] == node_id]:
            del self._cache[key]

    # ---- responses -----------------------------------------------------------------------

    def visible_peers(self, viewer: Node) -> list[Node]:
        can_see = self.ctx.policy.can_see
        return sorted((n for n in self.state.nodes.values() if n.id != viewer.id and can_see(viewer.id, n.id)),
                      key=lambda n: n.id)

    def user_profiles(self, nodes: list[Node]) -> list[JSON]:
        profiles = []
        for user_id in sorted({n.user_id for n in nodes if n.user_id is not None}):
            user = self.state.users.get(user_id)
            if user is not None:
                profiles.append(UserProfile(user.id, user.name, user.display_name or user.name,
                                            user.profile_pic_url).to_json())
        return profiles

    def full(self, node_id: int, cap: int) -> MapResponse:
        viewer = self.state.node(node_id)
        peers = self.visible_peers(viewer)
        resp = MapResponse(
            node=self.wire_node(viewer, cap),
            derp_map=self.ctx.derp_map(),
            peers_raw=[self.wire_node_bytes(p, cap) for p in peers],
            dns_config=self.ctx.dns_config,
            domain=self.ctx.domain,
            collect_services=False,
            packet_filters={"base": self.ctx.policy.filter_for(node_id)},
            user_profiles=self.user_profiles([viewer, *peers]),
            debug={"DisableLogTail": self.ctx.disable_logtail},
            control_time=utcnow(),
        )
        resp.ssh_policy = self.ctx.policy.ssh_for(node_id)
        return resp


def _prefix_sort_key(prefix: str) -> tuple[int, Any]:
    net = ipaddress.ip_network(prefix, strict=False)
    return (net.version, net)
