"""Policy engine: HuJSON policy -> validated model -> per-node packet filter, peers and SSH policy.

Pure: no I/O, no asyncio, nothing imported from the rest of pyscale. One owner (State) calls it.

API (stable; everything else in the package is internal):

    load_policy(text: str, filename: str = "<policy>", users: Iterable[PolicyUser] = (),
                nodes: Iterable[PolicyNode] = (), domains: Iterable[str] | None = None) -> Policy | None
        Parse HuJSON, validate strictly, and run the policy's `tests` / `sshTests` against the given
        (current) users and nodes; names with no node get a hypothetical one, so an empty topology works.
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
are the node's effective tags (a tagged node is not matched by its user's aliases, as in v0.27.1) and
`routes` its approved routes (exit routes included). Results are cached: treat returned lists and dicts as
read-only (peers_for returns a fresh set). `update_node` of a node whose user, tags and addresses are
unchanged (new hostname, routes no alias cares about) returns just {node.id}.

Typical use by State:

    policy = load_policy(text, path, users, nodes)            # PolicyError -> keep the old one
    cp = compile_policy(policy, users, nodes)
    cp.auto_approved_routes(node.id, announced)               # -> approve, then update_node(...)
    map: PacketFilters={"base": cp.filter_for(id)}, Peers=cp.peers_for(id), SSHPolicy=cp.ssh_for(id)
    node changed: for i in cp.update_node(PolicyNode(...)): push a map update to i

Output follows Headscale v0.27.1 (one FilterRule per ACL entry, IPProto [6, 17] by default and [1, 58] for
icmp, CIDR strings, `*` = 0.0.0.0/0 + ::/0, `check` SSH rules behave like accept); where v0.27.1 is looser
than Tailscale SaaS, SaaS is followed (a rule names only the receiving node's own addresses; a prefix does
not pull in a node's other address; nodes routing a source or destination prefix count as peers). Beyond
v0.27.1 and accepted on purpose: IP-only `grants`, `tests`/`sshTests`, `user:*@domain`, `localpart:*@domain`,
`acceptEnv`. tests/policy/KNOWN_DIFFERENCES.md lists what is compared against SaaS and how.
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
