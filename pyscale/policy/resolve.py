"""Alias resolution: which nodes (and which raw prefixes) an alias stands for, kept up to date per node.

A `Target` is the resolved form of one alias text. It records
- `nodes`: nodes the alias names by identity (user, group, tag, autogroup); their addresses are what the
  alias contributes to a filter;
- `prefixes`: literal prefixes (IPs, CIDRs, hosts, autogroup:internet) rendered as they are (a node address
  inside one does not pull in the node's other address, as in Tailscale SaaS);
- `inside`: nodes with an address inside those prefixes, and `route_nodes`: nodes whose approved subnet
  routes overlap them (traffic to or from the prefix goes through them); both count as members for peer
  visibility, as in Tailscale SaaS;
- `wildcard` (`*`), `internet` (exit nodes are members), `self_` (autogroup:self, resolved per node later).
`Resolver.matches(target, node)` re-decides one node's membership, which is what incremental updates use.
"""

from __future__ import annotations

import ipaddress

from .aliases import Alias, Kind
from .index import NodeIndex
from .ipset import Interval, merge, net_interval, subtract
from .model import Policy
from .topology import NodeView, PolicyUser

_ALL_V4 = net_interval(ipaddress.ip_network("0.0.0.0/0"))
# What autogroup:internet means (Headscale's theInternet): IPv4 and 2000::/3 without private, shared,
# link-local, loopback, multicast and Tailscale ranges.
_NOT_INTERNET = ("10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
                 "192.168.0.0/16", "224.0.0.0/4", "0.0.0.0/8", "fd7a:115c:a1e0::/48", "fc00::/7", "fe80::/10")
INTERNET: list[Interval] = subtract(
    merge([_ALL_V4, net_interval(ipaddress.ip_network("2000::/3"))]),
    merge(net_interval(ipaddress.ip_network(p)) for p in _NOT_INTERNET))


class Target:
    __slots__ = ("alias", "nodes", "inside", "prefixes", "route_nodes", "wildcard", "internet", "self_",
                 "mask")

    def __init__(self, alias: Alias) -> None:
        self.alias = alias
        self.nodes: set[int] = set()
        self.inside: set[int] = set()
        self.prefixes: list[Interval] = []
        self.route_nodes: set[int] = set()
        self.wildcard = alias.kind is Kind.WILDCARD
        self.internet = alias.name == "autogroup:internet"
        self.self_ = alias.name == "autogroup:self"
        self.mask: int | None = None  # members as a bitmask (NodeIndex), cached until membership changes

    def has_member(self, node: NodeView) -> bool:
        """Member for peer visibility: named, inside, routing for it, exit node for the internet, or `*`."""
        i = node.id
        return (self.wildcard or i in self.nodes or i in self.inside or i in self.route_nodes
                or (self.internet and node.is_exit))


class Resolver:
    """Resolves aliases against one policy and one user table."""

    def __init__(self, policy: Policy, users: dict[int, PolicyUser]) -> None:
        self.policy = policy
        self.users = users
        self.user_ids: dict[str, frozenset[int]] = {}
        self.group_ids: dict[str, frozenset[int]] = {}

    def _user_ids(self, token: str) -> frozenset[int]:
        """Users an `x@...` token names. `user:*@domain` names every user of that email domain; otherwise
        exactly one user must match by email, name, or name plus '@' (zero or several: nobody)."""
        if token.startswith("user:*@"):
            domain = token[len("user:*@"):]
            return frozenset(u.id for u in self.users.values() if u.email.rpartition("@")[2] == domain)
        bare = token[:-1] if token.endswith("@") else token
        hits = [u.id for u in self.users.values() if token in (u.email, u.name) or u.name == bare]
        return frozenset(hits) if len(hits) == 1 else frozenset()

    def users_of(self, alias: Alias) -> frozenset[int]:
        if alias.kind is Kind.USER:
            ids = self.user_ids.get(alias.name)
            if ids is None:
                ids = self.user_ids[alias.name] = self._user_ids(alias.name)
            return ids
        if alias.kind is Kind.GROUP:
            gids = self.group_ids.get(alias.name)
            if gids is None:
                out: set[int] = set()
                for member in self.policy.groups.get(alias.name, ()):
                    out |= self.users_of(Alias(Kind.USER, member))
                gids = self.group_ids[alias.name] = frozenset(out)
            return gids
        return frozenset()

    def target(self, alias: Alias, index: NodeIndex) -> Target:
        """Resolve over all nodes at once through the index (same result as `place` for every node)."""
        t = Target(alias)
        t.prefixes = self.prefixes(alias)
        t.nodes = self.named(alias, index)
        if t.prefixes and not t.internet:
            for iv in t.prefixes:
                t.inside |= index.inside(iv)
            t.inside -= t.nodes
            t.route_nodes = {i for i in index.routers if i not in t.nodes and i not in t.inside
                             and any(index.views[i].route_overlaps(iv) for iv in t.prefixes)}
        return t

    def named(self, alias: Alias, index: NodeIndex) -> set[int]:
        kind = alias.kind
        if kind is Kind.TAG:
            return set(index.by_tag.get(alias.name, ()))
        if kind in (Kind.USER, Kind.GROUP):
            return {n for u in self.users_of(alias) for n in index.by_user.get(u, ())}
        if alias.name == "autogroup:member":
            return set(index.untagged)
        if alias.name == "autogroup:tagged":
            return set(index.tagged)
        return set()

    def prefixes(self, alias: Alias) -> list[Interval]:
        if alias.kind is Kind.PREFIX and alias.network is not None:
            return [net_interval(alias.network)]
        if alias.kind is Kind.HOST:
            return [net_interval(self.policy.hosts[alias.name])]
        if alias.name == "autogroup:internet":
            return INTERNET
        return []

    def place(self, t: Target, node: NodeView) -> None:
        """(Re)decide one node's membership in a target."""
        t.nodes.discard(node.id)
        t.inside.discard(node.id)
        t.route_nodes.discard(node.id)
        if self.names(t.alias, node):
            t.nodes.add(node.id)
        elif t.internet or not t.prefixes:
            return
        elif any(node.ip_in(iv) for iv in t.prefixes):
            t.inside.add(node.id)
        elif any(node.route_overlaps(iv) for iv in t.prefixes):
            t.route_nodes.add(node.id)

    def names(self, alias: Alias, node: NodeView) -> bool:
        """Does the alias name this node by identity?"""
        kind = alias.kind
        if kind is Kind.TAG:
            return alias.name in node.tags
        if kind in (Kind.USER, Kind.GROUP):
            return not node.tagged and node.user_id in self.users_of(alias)
        if kind is Kind.AUTOGROUP:
            if alias.name == "autogroup:member":
                return not node.tagged
            if alias.name == "autogroup:tagged":
                return node.tagged
        return False
