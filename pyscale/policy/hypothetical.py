"""Stand-in nodes for policy tests whose users, groups or tags have no node (yet).

`tests` / `sshTests` speak about users and tags, not about today's devices: "alice may reach tag:db on
5432" should hold (or fail) on a fresh server as well as on a full one. So before running them, every test
alias that resolves to no node in the real topology gets one hypothetical node: a node of that user (a
stand-in user is made up if the name is unknown), of the group's first member, with that tag, or an untagged
/ tagged node for the autogroups. Their addresses come from a corner of the Tailscale ranges that
sequential allocation does not reach. Literal IPs and hosts stay as they are.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from .aliases import Alias, Kind, parse_alias
from .index import NodeIndex
from .model import Policy
from .resolve import Resolver
from .topology import NodeView, PolicyNode, PolicyUser

HYPOTHETICAL_V4 = int(ipaddress.IPv4Address("100.127.255.0"))  # .1 to .254
HYPOTHETICAL_V6 = int(ipaddress.IPv6Address("fd7a:115c:a1e0:ffff::"))
MAX_HYPOTHETICAL = 254
HYPOTHETICAL_TAG = "tag:hypothetical-test-node"


def test_aliases(policy: Policy) -> list[str]:
    """Every alias text the policy's tests name (sources and destinations)."""
    out = []
    for t in policy.tests:
        out.append(t.src)
        for dst in t.accept + t.deny:
            host = dst.rpartition(":")[0]
            out.append(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    for s in policy.ssh_tests:
        out.append(s.src)
        out.extend(s.dst)
    return out


def hypothetical(policy: Policy, users: list[PolicyUser], nodes: list[PolicyNode]
                 ) -> tuple[list[PolicyUser], list[PolicyNode]]:
    """Extra users and nodes so that every test alias that names nobody today names one node."""
    maker = _Maker(policy, users, nodes)
    for text in test_aliases(policy):
        try:
            alias = parse_alias(text.strip())
        except ValueError:
            continue  # the test itself reports it
        maker.ensure(alias)
    return maker.new_users, maker.new_nodes


class _Maker:
    def __init__(self, policy: Policy, users: list[PolicyUser], nodes: list[PolicyNode]) -> None:
        self.policy = policy
        self.users = {u.id: u for u in users}
        self.index = NodeIndex(NodeView(n) for n in nodes)
        self.next_user = max(self.users, default=0) + 1
        self.next_node = max((n.id for n in nodes), default=0) + 1
        self.new_users: list[PolicyUser] = []
        self.new_nodes: list[PolicyNode] = []

    def resolver(self) -> Resolver:
        return Resolver(self.policy, self.users)

    def ensure(self, alias: Alias) -> None:
        if alias.kind not in (Kind.USER, Kind.GROUP, Kind.TAG, Kind.AUTOGROUP):
            return
        if alias.kind is Kind.GROUP and alias.name not in self.policy.groups:
            return
        if alias.kind is Kind.TAG and alias.name not in self.policy.tag_owners:
            return
        if self.resolver().target(alias, self.index).nodes or len(self.new_nodes) >= MAX_HYPOTHETICAL:
            return
        if alias.kind is Kind.TAG:
            self.add_node(None, (alias.name,))
        elif alias.name == "autogroup:tagged":
            self.add_node(None, (HYPOTHETICAL_TAG,))
        elif alias.name == "autogroup:member":
            self.add_node(self.user_for("hypothetical-member@"), ())
        elif alias.kind is Kind.USER:
            self.add_node(self.user_for(alias.name), ())
        elif alias.kind is Kind.GROUP and self.policy.groups[alias.name]:
            self.add_node(self.user_for(self.policy.groups[alias.name][0]), ())

    def user_for(self, token: str) -> int:
        ids = self.resolver().users_of(Alias(Kind.USER, token))
        if ids:
            return min(ids)
        local, _, domain = token.rpartition("@")
        if token.startswith("user:*@"):
            local = "hypothetical"
        user = PolicyUser(self.next_user, local or token, f"{local}@{domain}" if domain else "")
        self.next_user += 1
        self.users[user.id] = user
        self.new_users.append(user)
        return user.id

    def add_node(self, user_id: int | None, tags: Iterable[str]) -> None:
        k = len(self.new_nodes) + 1
        ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
            ipaddress.IPv4Address(HYPOTHETICAL_V4 + k), ipaddress.IPv6Address(HYPOTHETICAL_V6 + k)]
        node = PolicyNode(self.next_node, user_id, ips, tuple(tags), f"hypothetical-{k}")
        self.next_node += 1
        self.new_nodes.append(node)
        self.index.add(NodeView(node))
