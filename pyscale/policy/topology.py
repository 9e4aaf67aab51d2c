"""What the compiler needs to know about users and nodes: plain input records, no database types.

The caller (State) decides a node's effective tags (forced tags, plus requested tags its owner may set per
`Policy.may_own_tag`) and which routes are approved; the compiler only reads them. `routes` are the node's
approved routes, exit routes (`0.0.0.0/0`, `::/0`) included.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from .aliases import Network
from .ipset import Interval, addr_key, net_interval

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
EXIT_ROUTES = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


@dataclass(frozen=True)
class PolicyUser:
    id: int
    name: str
    email: str = ""


@dataclass(frozen=True)
class PolicyNode:
    id: int
    user_id: int | None
    ips: Sequence[IPAddress]
    tags: Sequence[str] = ()
    hostname: str = ""
    routes: Sequence[Network] = ()  # approved routes (subnets and exit routes)


class NodeView:
    """A PolicyNode with the derived facts the compiler asks about over and over."""

    __slots__ = ("node", "id", "user_id", "tagged", "tags", "ip_keys", "_cidrs", "route_ivs", "is_exit")

    def __init__(self, node: PolicyNode) -> None:
        self.node = node
        self.id = node.id
        self.user_id = node.user_id
        self.tags = frozenset(node.tags)
        self.tagged = bool(self.tags)
        ips = sorted(node.ips, key=addr_key)
        self.ip_keys: list[int] = [addr_key(ip) for ip in ips]
        self._cidrs: list[str] | None = None
        self.is_exit = any(r in EXIT_ROUTES for r in node.routes)
        self.route_ivs: list[Interval] = [net_interval(r) for r in node.routes if r not in EXIT_ROUTES]

    @property
    def ip_cidrs(self) -> list[str]:
        """The node's addresses as `/32` and `/128` prefixes (formatted on first use: IPv6 text is slow)."""
        if self._cidrs is None:
            self._cidrs = [f"{ip}/{ip.max_prefixlen}" for ip in sorted(self.node.ips, key=addr_key)]
        return self._cidrs

    def ip_in(self, iv: Interval) -> bool:
        return any(iv[0] <= k <= iv[1] for k in self.ip_keys)

    def route_overlaps(self, iv: Interval) -> bool:
        return any(r[0] <= iv[1] and iv[0] <= r[1] for r in self.route_ivs)
