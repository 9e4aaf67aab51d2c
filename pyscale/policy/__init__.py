"""Policy engine: HuJSON policy -> validated model -> per-node packet filter, peers and SSH policy.

Pure: no I/O, no asyncio, nothing imported from the rest of pyscale. One owner (State) calls it.

API (stable; everything else in the package is internal):

    load_policy(text: str, filename: str = "<policy>", users: Iterable[PolicyUser] = (),
                nodes: Iterable[PolicyNode] = (), domains: Iterable[str] | None = None) -> Policy | None
        Parse HuJSON, validate strictly, and run the policy's `tests` / `sshTests` against the given
        (current) users and nodes: test sources/destinations resolve to real nodes, so pass the topology.
        `user:*@d` / `localpart:*@d` must name one of `domains` (default: the users' email domains).
        Empty text -> None (= no policy: allow all, everyone sees everyone).
        Raises PolicyError (str: "file:line:col: message"); PolicyTestError (a PolicyError) names the
        failing test. On reload, keep serving the old CompiledPolicy when this raises.

    check_policy_tests(policy: Policy, users, nodes) -> None
        The same tests alone, e.g. again after the topology changed.

    compile_policy(policy: Policy | None, users: Iterable[PolicyUser], nodes: Iterable[PolicyNode])
        -> CompiledPolicy

    CompiledPolicy.filter_for(node_id: int) -> list[dict]       tailcfg.FilterRule dicts for
        MapResponse.PacketFilters["base"] (SrcIPs, DstPorts[{IP, Ports{First, Last}}], IPProto);
        [] = deny all inbound; no policy / no `acls` = FilterAllowAll.
    CompiledPolicy.peers_for(node_id: int) -> set[int]          nodes it may reach or that may reach it
    CompiledPolicy.ssh_for(node_id: int) -> dict | None         MapResponse.SSHPolicy ({"rules": [...]});
        None when the policy has no `ssh` section (the client then denies Tailscale SSH)
    CompiledPolicy.auto_approved_routes(node_id: int, announced: Iterable[Network]) -> list[Network]
    CompiledPolicy.update_node(node: PolicyNode) -> set[int]    add/replace one node; returns the ids whose
        filter/peers/SSH may have changed (re-send their maps). Users or policy changed -> compile again.
    CompiledPolicy.remove_node(node_id: int) -> set[int]        same, for a deleted node
    Policy.may_own_tag(tag: str, user_name: str, user_email: str = "") -> bool   tagOwners check for
        requested tags (the caller then passes allowed tags in PolicyNode.tags)

Inputs: PolicyUser(id, name, email) and PolicyNode(id, user_id, ips, tags, hostname, routes) where `tags`
are the node's effective tags and `routes` its approved routes (exit routes included). Results are cached:
treat returned lists/dicts/sets as read-only.
"""

from collections.abc import Iterable

from .checks import check_policy_tests
from .compiler import CompiledPolicy, compile_policy
from .errors import PolicyError, PolicyTestError
from .model import Policy
from .model import load_policy as _load_policy_unchecked
from .topology import PolicyNode, PolicyUser


def load_policy(text: str, filename: str = "<policy>", users: Iterable[PolicyUser] = (),
                nodes: Iterable[PolicyNode] = (), domains: Iterable[str] | None = None) -> Policy | None:
    """Parse, validate and run the policy's own tests over the given topology (see the module docstring)."""
    policy = _load_policy_unchecked(text, filename)
    users = list(users)
    if policy is not None and (users or domains is not None):
        policy.check_domains(domains if domains is not None else {u.email.rpartition("@")[2] for u in users})
    if policy is not None:
        check_policy_tests(policy, users, nodes)
    return policy


__all__ = [
    "CompiledPolicy",
    "Policy",
    "PolicyError",
    "PolicyNode",
    "PolicyTestError",
    "PolicyUser",
    "check_policy_tests",
    "compile_policy",
    "load_policy",
]
