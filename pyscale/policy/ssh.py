"""Per-node SSH policy (MapResponse.SSHPolicy, lowercase keys as in tailcfg's JSON tags).

For every `ssh` rule whose destination includes the node, one SSHRule lists the source nodes' addresses as
`principals` and maps login names in `sshUsers`: `root` -> root, a name -> itself, `autogroup:nonroot` ->
`{"*": "=", "root": ""}` (any user as themselves, never root). `localpart:*@domain` gives each source user of
that email domain their own local part, so it becomes one extra rule per such user; like Tailscale SaaS, a
rule naming `localpart:*@domain` also lets each source node into its owner's own (untagged) nodes, as if
`autogroup:self` were among its destinations. `check` behaves like
`accept` in Headscale v0.27.1 (no re-authentication), with `sessionDuration` set to the check period.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import SshRule
from .resolve import Target

if TYPE_CHECKING:
    from .compiler import CompiledPolicy
    from .topology import NodeView

DEFAULT_CHECK_PERIOD_NS = 12 * 3600 * 10**9


def compile_ssh(cp: CompiledPolicy, node: NodeView) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    for rule, srcs, dsts in cp.ssh_rules:
        sources = _sources(cp, srcs, dsts, node, _has_localpart(rule))
        if sources:
            rules.extend(_rules_for(cp, rule, sorted(sources)))
    return {"rules": rules}


def _has_localpart(rule: SshRule) -> bool:
    return any(u.startswith("localpart:*@") and len(u) > len("localpart:*@") for u in rule.users)


def _sources(cp: CompiledPolicy, srcs: list[Target], dsts: list[Target], node: NodeView, to_self: bool
             ) -> set[int]:
    """Nodes that may log in to `node` under this rule."""
    out: set[int] = set()
    if any(t.has_member(node) for t in dsts if not t.self_):
        for t in srcs:
            out |= set(cp.nodes) if t.wildcard else t.nodes
    if (to_self or any(t.self_ for t in dsts)) and not node.tagged:
        mine = cp.same_user(node)
        for t in srcs:
            out |= mine if t.wildcard else (t.nodes & mine)
    return out


def _rules_for(cp: CompiledPolicy, rule: SshRule, sources: list[int]) -> list[dict[str, Any]]:
    users: dict[str, str] = {}
    localpart_domains = []
    for login in rule.users:
        if login == "autogroup:nonroot":
            users["*"] = "="
            users.setdefault("root", "")
        elif login.startswith("localpart:*@") and len(login) > len("localpart:*@"):
            localpart_domains.append(login[len("localpart:*@"):])
        else:
            users[login] = login
    out = []
    if users:
        out.append(_rule(rule, _principals(cp, sources), users))
    for domain in localpart_domains:
        owners = {uid for i in sources if not cp.nodes[i].tagged and (uid := cp.nodes[i].user_id) is not None}
        for user_id in sorted(owners):
            user = cp.users.get(user_id)
            if user is None or user.email.rpartition("@")[2] != domain:
                continue
            local = user.email.rpartition("@")[0]
            mine = [i for i in sources if cp.nodes[i].user_id == user_id and not cp.nodes[i].tagged]
            out.append(_rule(rule, _principals(cp, mine), {local: local}))
    return out


def _principals(cp: CompiledPolicy, ids: list[int]) -> list[dict[str, str]]:
    return [{"nodeIP": str(ip)} for i in ids for ip in cp.nodes[i].node.ips]


def _rule(rule: SshRule, principals: list[dict[str, str]], users: dict[str, str]) -> dict[str, Any]:
    action: dict[str, Any] = {"accept": True, "allowAgentForwarding": True, "allowLocalPortForwarding": True,
                              "allowRemotePortForwarding": True}
    if rule.action == "check":
        period = rule.check_period_s
        action["sessionDuration"] = DEFAULT_CHECK_PERIOD_NS if period is None else int(period * 10**9)
    out: dict[str, Any] = {"principals": principals, "sshUsers": dict(users), "action": action}
    if rule.accept_env:
        out["acceptEnv"] = list(rule.accept_env)
    return out
