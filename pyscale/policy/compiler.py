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
from .index import NodeIndex
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
    src_mask: int | None = None  # members as NodeIndex bitmasks, cached
    dst_mask: int | None = None


class CompiledPolicy:
    """Per-node view of a policy over a topology. Not thread-safe; one owner (State) calls it."""

    def __init__(self, policy: Policy | None, users: Iterable[PolicyUser],
                 nodes: Iterable[PolicyNode]) -> None:
        self.policy = policy
        self.users = {u.id: u for u in users}
        self.index = NodeIndex(NodeView(n) for n in nodes)
        self.nodes = self.index.views  # id -> NodeView, kept current by the index
        self.resolver = Resolver(policy, self.users) if policy is not None else None
        self.targets: dict[str, Target] = {}
        self.rules: list[_Rule] = []
        self._by_target: dict[str, list[int]] = {}  # alias text -> indexes of rules naming it
        self._filters: dict[int, list[dict[str, Any]]] = {}
        self._peers: dict[int, int] = {}  # peer sets as NodeIndex bitmasks: 1.25 KB per node at 10,000 nodes
        self._ssh: dict[int, dict[str, Any] | None] = {}
        # Stale per-node entries are only marked; the old value is replaced (and freed) when next asked for.
        # Freeing thousands of cached filters inside update_node would cost more than the update itself.
        self._stale_filter: set[int] = set()
        self._stale_ssh: set[int] = set()
        self._rules_of: dict[int, tuple[list[int], list[int]]] = {}
        if policy is not None and policy.acls is not None:
            self.rules = [self._rule(acl) for acl in policy.acls]
        for k, rule in enumerate(self.rules):
            for t in rule.src + [t for t, _ in rule.dst]:
                self._by_target.setdefault(t.alias.name, []).append(k)
        self.self_rules = [k for k, r in enumerate(self.rules) if r.has_self]
        self.ssh_rules = [(r, [self.target(a) for a in r.src], [self.target(a) for a in r.dst])
                          for r in (policy.ssh or [])] if policy is not None else []
        for rule in self.rules:  # eager, so the first node change does not pay for them
            self._src_mask(rule), self._dst_mask(rule)

    # -- construction -------------------------------------------------------------------------------------

    def target(self, alias: Alias) -> Target:
        t = self.targets.get(alias.name)
        if t is None:
            assert self.resolver is not None
            t = self.targets[alias.name] = self.resolver.target(alias, self.index)
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
        if cached is None or node_id in self._stale_filter:
            self._stale_filter.discard(node_id)
            node = self.nodes[node_id]
            ids = set(self.rules_of(node)[1])
            if not node.tagged:
                ids.update(self.self_rules)
            cached = [r for k in sorted(ids) for r in self._render(self.rules[k], node)]
            self._filters[node_id] = cached
        return cached

    def peers_for(self, node_id: int) -> set[int]:
        """Ids of nodes this node may reach or that may reach it (itself excluded). A fresh set each call."""
        return self.index.ids_of(self.peer_mask(node_id))

    def peer_mask(self, node_id: int) -> int:
        """peers_for as a NodeIndex bitmask (cached)."""
        cached = self._peers.get(node_id)
        if cached is None:
            cached = self._peers[node_id] = self._compute_peers(self.nodes[node_id])
        return cached

    def ssh_for(self, node_id: int) -> dict[str, Any] | None:
        """MapResponse.SSHPolicy for this node (lowercase keys); None when the policy has no `ssh`."""
        if self.policy is None or self.policy.ssh is None:
            return None
        if node_id not in self._ssh or node_id in self._stale_ssh:
            self._stale_ssh.discard(node_id)
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
        old = self.nodes.get(node.id)
        affected = self._related(node.id) if old is not None else set()
        view = NodeView(node)
        self.index.add(view)
        ips_changed = old is None or old.ip_keys != view.ip_keys
        exit_changed = (old is not None and old.is_exit) != view.is_exit
        for t in self.targets.values():
            before = (node.id in t.nodes, node.id in t.inside, node.id in t.route_nodes)
            if self.resolver is not None:
                self.resolver.place(t, view)
            after = (node.id in t.nodes, node.id in t.inside, node.id in t.route_nodes)
            if (before != after or (ips_changed and (before[0] or after[0])) or (t.wildcard and old is None)
                    or (t.internet and exit_changed)):
                self._target_changed(t, node.id, any(after))
        self._rules_of.pop(node.id, None)
        affected |= self._related(node.id) | {node.id}
        self._drop(affected)
        return affected

    def remove_node(self, node_id: int) -> set[int]:
        """Forget one node; returns ids whose filter, peers or SSH policy may have changed."""
        view = self.nodes.get(node_id)
        if view is None:
            return set()
        affected = self._related(node_id)
        self.index.remove(node_id)
        for t in self.targets.values():
            if (node_id in t.nodes or node_id in t.inside or node_id in t.route_nodes or t.wildcard
                    or (t.internet and view.is_exit)):
                t.nodes.discard(node_id)
                t.inside.discard(node_id)
                t.route_nodes.discard(node_id)
                self._target_changed(t, node_id, False)
        self._rules_of.pop(node_id, None)
        self._drop(affected)
        for cache in (self._filters, self._peers, self._ssh):
            cache.pop(node_id, None)
        self._stale_filter.discard(node_id)
        self._stale_ssh.discard(node_id)
        return affected

    def _target_changed(self, t: Target, node_id: int, member: bool) -> None:
        """One node's membership (or addresses) changed: patch the target's mask, drop what renders it."""
        if t.wildcard or t.internet:
            t.mask = None  # derived from index-wide sets; cheap to rebuild
        elif t.mask is not None:
            bit = 1 << self.index.bit[node_id]
            t.mask = t.mask | bit if member else t.mask & ~bit
        for k in self._by_target.get(t.alias.name, ()):
            rule = self.rules[k]
            rule.src_text = None
            rule.src_mask = rule.dst_mask = None

    def _drop(self, ids: set[int]) -> None:
        self._stale_filter |= ids
        self._stale_ssh |= ids
        for i in ids:
            self._peers.pop(i, None)

    def _related(self, node_id: int) -> set[int]:
        """Nodes whose view includes this node: its peers, and SSH destinations it may log in to."""
        node = self.nodes[node_id]
        m = self.peer_mask(node_id)
        for rule, srcs, dsts in self.ssh_rules:
            if any(t.has_member(node) for t in srcs):
                for t in dsts:
                    m |= self.index.mask(self.same_user(node)) if t.self_ else self.target_mask(t)
                if any(u.startswith("localpart:") for u in rule.users):
                    m |= self.index.mask(self.same_user(node))
        related = self.index.ids_of(m)
        related.discard(node_id)
        return related

    # -- membership ---------------------------------------------------------------------------------------

    def target_mask(self, t: Target) -> int:
        if t.mask is None:
            if t.wildcard:
                t.mask = self.index.all_mask
            else:
                m = self.index.mask(t.nodes) | self.index.mask(t.inside) | self.index.mask(t.route_nodes)
                t.mask = m | self.index.mask(self.index.exits) if t.internet else m
        return t.mask

    def rules_of(self, node: NodeView) -> tuple[list[int], list[int]]:
        """Indexes of the rules naming this node as a source, and as a (non-self) destination."""
        cached = self._rules_of.get(node.id)
        if cached is None:
            src: set[int] = set()
            dst: set[int] = set()
            for t in self.targets.values():
                if t.has_member(node):
                    for k in self._by_target.get(t.alias.name, ()):
                        rule = self.rules[k]
                        if t in rule.src:
                            src.add(k)
                        if any(d is t for d, _ in rule.dst):
                            dst.add(k)
            cached = self._rules_of[node.id] = (sorted(src), sorted(dst))
        return cached

    def _src_mask(self, rule: _Rule) -> int:
        if rule.src_mask is None:
            m = 0
            for t in rule.src:
                m |= self.target_mask(t)
            rule.src_mask = m
        return rule.src_mask

    def _dst_mask(self, rule: _Rule) -> int:
        if rule.dst_mask is None:
            m = 0
            for t, _ in rule.dst:
                if not t.self_:
                    m |= self.target_mask(t)
            rule.dst_mask = m
        return rule.dst_mask

    def same_user(self, node: NodeView) -> set[int]:
        """Untagged nodes of this node's user (autogroup:self)."""
        if node.tagged or node.user_id is None:
            return set()
        return self.index.by_user.get(node.user_id, set())

    def _compute_peers(self, node: NodeView) -> int:
        own_bit = 1 << self.index.bit[node.id]
        if self.allow_all:
            return self.index.all_mask & ~own_bit
        src_rules, dst_rules = self.rules_of(node)
        m = 0
        for k in src_rules:
            m |= self._dst_mask(self.rules[k])
        for k in dst_rules:
            m |= self._src_mask(self.rules[k])
        mine = self.same_user(node)
        if mine:
            mine_mask = self.index.mask(mine)
            in_src = set(src_rules)
            for k in self.self_rules:
                m |= mine_mask if k in in_src else mine_mask & self._src_mask(self.rules[k])
        return m & ~own_bit

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
            src_mask = self._src_mask(rule)
            srcs = {i for i in self.same_user(node) if self.index.has(src_mask, i)}
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
