"""Compile a policy over a topology into what each node receives; keep it current as nodes change.

`compile_policy` resolves every alias once (a `Target` per distinct alias text) and indexes rules by alias.
Everything per node is derived lazily and cached: the packet filter (rules reduced to the node as
destination), the peer set (nodes it may reach or that may reach it) and the SSH policy. `update_node` and
`remove_node` re-place one node in every target, drop the caches the change can touch and return the ids of
the nodes whose filter, peers or SSH policy may differ, so the caller re-sends only those maps.

Rule semantics follow Headscale v0.27.1 (one FilterRule per ACL entry, explicit IPProto, CIDR strings, `*` =
0.0.0.0/0 + ::/0); reductions follow Tailscale SaaS where v0.27.1 is looser (a destination entry names only
the receiving node's own addresses; prefixes are not widened to the other address family).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .aliases import ALL_PORTS, Alias, Network
from .ipset import Interval, contains, merge, overlaps, to_cidrs
from .model import AclRule, Policy
from .resolve import Resolver, Target
from .ssh import compile_ssh
from .topology import EXIT_ROUTES, NodeView, PolicyNode, PolicyUser

ANY_CIDRS = ["0.0.0.0/0", "::/0"]
ALLOW_ALL: list[dict[str, Any]] = [
    {"SrcIPs": ["*"], "DstPorts": [{"IP": "*", "Ports": {"First": ALL_PORTS[0], "Last": ALL_PORTS[1]}}]}]


@dataclass
class _Rule:
    acl: AclRule
    src: list[Target]
    dst: list[tuple[Target, tuple[tuple[int, int], ...]]]
    has_self: bool
    src_text: list[str] | None = None  # rendered SrcIPs, cached
    src_set: set[int] | None = None  # node members, cached
    dst_set: set[int] | None = None


class CompiledPolicy:
    """Per-node view of a policy over a topology. Not thread-safe; one owner (State) calls it."""

    def __init__(self, policy: Policy | None, users: Iterable[PolicyUser],
                 nodes: Iterable[PolicyNode]) -> None:
        self.policy = policy
        self.users = {u.id: u for u in users}
        self.nodes: dict[int, NodeView] = {n.id: NodeView(n) for n in nodes}
        self.resolver = Resolver(policy, self.users) if policy is not None else None
        self.targets: dict[str, Target] = {}
        self.rules: list[_Rule] = []
        self._filters: dict[int, list[dict[str, Any]]] = {}
        self._peers: dict[int, set[int]] = {}
        self._ssh: dict[int, dict[str, Any] | None] = {}
        if policy is not None and policy.acls is not None:
            self.rules = [self._rule(acl) for acl in policy.acls]
        self.ssh_rules = [(r, [self.target(a) for a in r.src], [self.target(a) for a in r.dst])
                          for r in (policy.ssh or [])] if policy is not None else []

    # -- construction -------------------------------------------------------------------------------------

    def target(self, alias: Alias) -> Target:
        t = self.targets.get(alias.name)
        if t is None:
            assert self.resolver is not None
            t = self.targets[alias.name] = self.resolver.target(alias, self.nodes)
        return t

    def _rule(self, acl: AclRule) -> _Rule:
        src = [self.target(a) for a in acl.src]
        dst = [(self.target(a), ports) for a, ports in acl.dst]
        return _Rule(acl, src, dst, any(t.self_ for t, _ in dst))

    @property
    def allow_all(self) -> bool:
        return self.policy is None or self.policy.acls is None

    # -- queries ------------------------------------------------------------------------------------------

    def filter_for(self, node_id: int) -> list[dict[str, Any]]:
        """`PacketFilters["base"]` for this node: tailcfg.FilterRule dicts (an empty list denies all)."""
        if self.allow_all:
            return ALLOW_ALL
        cached = self._filters.get(node_id)
        if cached is None:
            node = self.nodes[node_id]
            cached = self._filters[node_id] = [r for rule in self.rules for r in self._render(rule, node)]
        return cached

    def peers_for(self, node_id: int) -> set[int]:
        """Ids of nodes this node may reach or that may reach it (itself excluded)."""
        cached = self._peers.get(node_id)
        if cached is None:
            cached = self._peers[node_id] = self._compute_peers(self.nodes[node_id])
        return cached

    def ssh_for(self, node_id: int) -> dict[str, Any] | None:
        """MapResponse.SSHPolicy for this node (lowercase keys); None when the policy has no `ssh`."""
        if self.policy is None or self.policy.ssh is None:
            return None
        if node_id not in self._ssh:
            self._ssh[node_id] = compile_ssh(self, self.nodes[node_id])
        return self._ssh[node_id]

    def auto_approved_routes(self, node_id: int, announced: Iterable[Network]) -> list[Network]:
        """The announced routes autoApprovers approve for this node (exit routes only via `exitNode`)."""
        if self.policy is None or self.resolver is None:
            return []
        node = self.nodes[node_id]
        out = []
        for route in announced:
            if route in EXIT_ROUTES:
                approvers: Iterable[Alias] = self.policy.exit_approvers
            else:
                approvers = [a for net, aliases in self.policy.route_approvers.items()
                             if net.version == route.version and route.subnet_of(net)  # type: ignore[arg-type]
                             for a in aliases]
            if any(self.resolver.names(a, node) for a in approvers):
                out.append(route)
        return out

    # -- incremental --------------------------------------------------------------------------------------

    def update_node(self, node: PolicyNode) -> set[int]:
        """Add or replace one node; returns ids whose filter, peers or SSH policy may have changed."""
        affected = self._related(node.id) if node.id in self.nodes else set()
        view = self.nodes[node.id] = NodeView(node)
        self._replace(view)
        return affected | self._related(node.id) | {node.id}

    def remove_node(self, node_id: int) -> set[int]:
        """Forget one node; returns ids whose filter, peers or SSH policy may have changed."""
        if node_id not in self.nodes:
            return set()
        affected = self._related(node_id)
        view = self.nodes.pop(node_id)
        for t in self.targets.values():
            t.nodes.discard(node_id)
            t.inside.discard(node_id)
            t.route_nodes.discard(node_id)
        self._invalidate({node_id} | affected, view)
        return affected

    def _replace(self, view: NodeView) -> None:
        assert self.resolver is not None or not self.targets
        for t in self.targets.values():
            self.resolver.place(t, view)  # type: ignore[union-attr]
        self._invalidate(self._related(view.id) | {view.id}, view)

    def _related(self, node_id: int) -> set[int]:
        """Nodes whose view includes this node: its peers, and SSH destinations it may log in to."""
        related = set(self.peers_for(node_id))
        node = self.nodes[node_id]
        for _rule, srcs, dsts in self.ssh_rules:
            if any(self._member(t, node) for t in srcs):
                related |= self._members(dsts, node)
        related.discard(node_id)
        return related

    def _invalidate(self, ids: set[int], view: NodeView) -> None:
        for rule in self.rules:
            rule.src_text = rule.src_set = rule.dst_set = None
        for i in ids:
            self._filters.pop(i, None)
            self._peers.pop(i, None)
            self._ssh.pop(i, None)

    # -- membership ---------------------------------------------------------------------------------------

    def _member(self, t: Target, node: NodeView) -> bool:
        return t.has_member(node)

    def _members(self, targets: Iterable[Target], for_node: NodeView | None = None) -> set[int]:
        out: set[int] = set()
        for t in targets:
            if t.wildcard:
                return set(self.nodes)
            out |= t.nodes
            out |= t.inside
            out |= t.route_nodes
            if t.internet:
                out |= {n.id for n in self.nodes.values() if n.is_exit}
        return out

    def same_user(self, node: NodeView) -> set[int]:
        """Untagged nodes of this node's user (autogroup:self)."""
        if node.tagged or node.user_id is None:
            return set()
        return {n.id for n in self.nodes.values() if not n.tagged and n.user_id == node.user_id}

    def _rule_src(self, rule: _Rule) -> set[int]:
        if rule.src_set is None:
            rule.src_set = self._members(rule.src)
        return rule.src_set

    def _rule_dst(self, rule: _Rule) -> set[int]:
        if rule.dst_set is None:
            rule.dst_set = self._members(t for t, _ in rule.dst if not t.self_)
        return rule.dst_set

    def _compute_peers(self, node: NodeView) -> set[int]:
        if self.allow_all:
            return set(self.nodes) - {node.id}
        peers: set[int] = set()
        for rule in self.rules:
            in_src = node.id in self._rule_src(rule)
            if in_src:
                peers |= self._rule_dst(rule)
            if node.id in self._rule_dst(rule):
                peers |= self._rule_src(rule)
            if rule.has_self and not node.tagged:
                mine = self.same_user(node)
                if in_src:
                    peers |= mine
                if any(i in self._rule_src(rule) for i in mine):
                    peers |= mine & self._rule_src(rule)
        peers.discard(node.id)
        return peers

    # -- filter rendering ---------------------------------------------------------------------------------

    def render_src(self, targets: Iterable[Target], only: set[int] | None = None) -> list[str]:
        """SrcIPs strings: member addresses plus literal prefixes, merged (`only` restricts the nodes)."""
        ivs: list[Interval] = []
        for t in targets:
            if t.wildcard and only is None:
                return list(ANY_CIDRS)
            ids = t.nodes if only is None else (only if t.wildcard else t.nodes & only)
            for i in ids:
                ivs.extend((k, k) for k in self.nodes[i].ip_keys)
            if only is None:
                ivs.extend(t.prefixes)
        return to_cidrs(merge(ivs))

    def _render(self, rule: _Rule, node: NodeView) -> list[dict[str, Any]]:
        out = []
        ports = [p for t, ps in rule.dst if not t.self_ for p in self._dst_entries(t, ps, node)]
        if ports and (src := self._src_text(rule)):
            out.append({"SrcIPs": src, "DstPorts": ports, "IPProto": list(rule.acl.protocols)})
        if rule.has_self and not node.tagged:
            srcs = self.same_user(node) & self._rule_src(rule)
            self_ports = [{"IP": ip, "Ports": {"First": a, "Last": b}}
                          for t, ps in rule.dst if t.self_ for a, b in ps for ip in node.ip_cidrs]
            if srcs and self_ports:
                out.append({"SrcIPs": self.render_src(rule.src, srcs), "DstPorts": self_ports,
                            "IPProto": list(rule.acl.protocols)})
        return out

    def _src_text(self, rule: _Rule) -> list[str]:
        if rule.src_text is None:
            rule.src_text = self.render_src(rule.src)
        return rule.src_text

    def _dst_entries(self, t: Target, ports: tuple[tuple[int, int], ...],
                     node: NodeView) -> list[dict[str, Any]]:
        if t.wildcard:
            ips = ANY_CIDRS
        else:
            ips = list(node.ip_cidrs) if node.id in t.nodes else []
            if t.internet:
                ips += to_cidrs(t.prefixes) if node.is_exit else []
            else:
                ips += [c for iv in t.prefixes if self._reaches(iv, node) for c in to_cidrs([iv])]
        return [{"IP": ip, "Ports": {"First": a, "Last": b}} for ip in ips for a, b in ports]

    @staticmethod
    def _reaches(iv: Interval, node: NodeView) -> bool:
        """A literal destination prefix concerns a node that owns an address in it or routes into it."""
        return any(contains(iv, (k, k)) for k in node.ip_keys) or any(overlaps(iv, r) for r in node.route_ivs)


def compile_policy(policy: Policy | None, users: Iterable[PolicyUser],
                   nodes: Iterable[PolicyNode]) -> CompiledPolicy:
    """Compile once; then query per node and feed node changes to `update_node` / `remove_node`."""
    return CompiledPolicy(policy, users, nodes)
