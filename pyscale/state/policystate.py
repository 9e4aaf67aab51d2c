"""The live policy: the loaded Policy, its CompiledPolicy, and how both follow State.

It is the mapper's FilterSource. An EventBus hook keeps the compiled policy current before any
map session sees a change: a node whose policy-relevant facts (addresses, tags, user, approved
routes) changed is recompiled incrementally, and the viewers whose filter or peer set may have
changed get a FiltersChanged. A reload that fails (syntax, unknown names, failing `tests`)
raises and leaves the old policy serving.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from pyscale.policy import CompiledPolicy, Policy, PolicyNode, PolicyUser, compile_policy, load_policy
from pyscale.state.events import Event, FiltersChanged, FullUpdate, NodeChanged, NodeRemoved
from pyscale.state.model import Node
from pyscale.state.store import State

log = logging.getLogger("pyscale.policy")
Checked = tuple[Policy | None, CompiledPolicy, dict[int, PolicyNode]]


def policy_node(node: Node) -> PolicyNode:
    ips = [a for a in (node.ipv4, node.ipv6) if a is not None]
    routes = []
    for text in node.approved_routes:
        try:
            routes.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            log.warning("node %d has an unparseable approved route %r (ignored by the policy)", node.id, text)
    return PolicyNode(node.id, node.user_id, ips, tuple(sorted(node.forced_tags)), node.hostname, tuple(routes))


class PolicyState:
    def __init__(self, state: State, source: str = "<policy>") -> None:
        self.state = state
        self.source = source
        self.text = ""
        self.policy: Policy | None = None
        self.compiled: CompiledPolicy = compile_policy(None, [], [])
        self._inputs: dict[int, PolicyNode] = {}
        state.bus.add_hook(self._on_event)

    def users(self) -> list[PolicyUser]:
        return [PolicyUser(u.id, u.name, u.email) for u in self.state.users.values()]

    def check(self, text: str, source: str | None = None) -> Checked:
        """Parse, validate, run the policy's tests and compile over the current topology; switch nothing."""
        nodes = {n.id: policy_node(n) for n in self.state.nodes.values()}
        policy = load_policy(text, source or self.source, self.users(), nodes.values())
        return policy, compile_policy(policy, self.users(), nodes.values()), nodes

    def load(self, text: str, source: str | None = None) -> None:
        """Validate and switch to ``text``; raises PolicyError and keeps the old policy on failure."""
        source = source or self.source
        policy, compiled, nodes = self.check(text, source)
        self.text, self.policy, self.compiled, self._inputs, self.source = text, policy, compiled, nodes, source
        log.info("policy loaded from %s (%s)", source, "allow all" if policy is None else "rules")

    def reload(self, text: str, source: str | None = None) -> None:
        self.load(text, source)
        self.state.bus.publish(FullUpdate("policy changed"))

    # ---- FilterSource for the mapper -----------------------------------------------------

    def filter_for(self, node_id: int) -> list[dict[str, Any]]:
        return self.compiled.filter_for(node_id) if node_id in self._inputs or self.policy is None else []

    def can_see(self, viewer_id: int, peer_id: int) -> bool:
        if self.policy is None:
            return True
        return viewer_id in self._inputs and peer_id in self.compiled.peers_for(viewer_id)

    def ssh_for(self, node_id: int) -> dict[str, Any] | None:
        return self.compiled.ssh_for(node_id) if node_id in self._inputs else None

    # ---- keeping up with State -------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if isinstance(event, NodeChanged):
            node = self.state.nodes.get(event.node_id)
            if node is None:
                return
            fresh = policy_node(node)
            if self._inputs.get(node.id) == fresh:
                return
            self._inputs[node.id] = fresh
            self._announce(self.compiled.update_node(fresh))
        elif isinstance(event, NodeRemoved) and event.node_id in self._inputs:
            del self._inputs[event.node_id]
            self._announce(self.compiled.remove_node(event.node_id))
        elif isinstance(event, FullUpdate) and event.reason.startswith("user"):
            self.compiled = compile_policy(self.policy, self.users(), self._inputs.values())

    def _announce(self, node_ids: set[int]) -> None:
        if node_ids and self.policy is not None:
            self.state.bus.publish(FiltersChanged(frozenset(node_ids)))
