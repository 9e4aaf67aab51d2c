"""Run one Tailscale SaaS capture (shared/headscale/policies/tailscale-saas-vectors) through the compiler and
compare semantically with what SaaS sent each node.

Compared per node: the packet filter as the set of allowed (protocol, source address, destination address,
port), cut into cells at the union of both sides' boundaries, so rule order, merging and CIDR-vs-range
spelling do not matter; the visible peers (by hostname); the SSH rules as a set of (principal address, login,
local user, action, acceptEnv).
Normalised, as FORMAT.md lists them as representation/version differences, not semantic ones:
- an empty SaaS IPProto (SaaS default TCP, UDP, ICMPv4, ICMPv6) counts as Headscale v0.27.1's default TCP+UDP;
- a SaaS source set that covers SaaS's expansion of `*` (100.64.0.0/10 without 100.115.92.0/23, plus
  fd7a:115c:a1e0::/48, plus approved subnet routes) counts as `*` (v0.27.1: 0.0.0.0/0 and ::/0);
- an SSH `check` (SaaS: holdAndDelegate) counts as `accept`, as in v0.27.1, and sessionDuration is ignored;
- ICMPv4 towards IPv6 destinations and ICMPv6 towards IPv4 ones cannot exist, so they are not compared (SaaS
  sends `[1]` for `proto: icmp` to an IPv4 subnet where v0.27.1 sends `[1, 58]`);
- an sshUsers entry mapping a login to "" (refuse) in a rule without "*" is dropped: such a rule would not
  match that login anyway (SaaS adds `"root": ""` to every rule that does not grant root).
"""

from __future__ import annotations

import bisect
import ipaddress
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pyscale.policy import PolicyError, PolicyNode, PolicyUser, compile_policy, load_policy
from pyscale.policy.ipset import V6_BASE, Interval, merge, net_interval, parse_range, subtract

# A verbatim copy of shared/headscale/policies/tailscale-saas-vectors lives in tests/data (offline CI).
VECTORS = Path(__file__).resolve().parents[1] / "data/headscale/policies/tailscale-saas-vectors"
CATEGORIES = ("acl", "ssh", "routes", "grant", "nodeattrs", "policytest", "sshtest")

ALL: list[Interval] = [(0, (1 << 32) - 1), (V6_BASE, V6_BASE + (1 << 128) - 1)]
SAAS_DEFAULT_PROTOS = frozenset({6, 17})  # compared as v0.27.1's default, see module docstring
_SAAS_STAR = subtract(
    merge([net_interval(ipaddress.ip_network("100.64.0.0/10")),
           net_interval(ipaddress.ip_network("fd7a:115c:a1e0::/48"))]),
    [net_interval(ipaddress.ip_network("100.115.92.0/23"))])


@dataclass
class Result:
    test_id: str
    ok: bool
    problems: list[str] = field(default_factory=list)


def load_capture(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def topology(cap: dict[str, Any]) -> tuple[list[PolicyUser], list[PolicyNode], dict[int, str]]:
    users = [PolicyUser(u["id"], u["name"], u.get("email", "")) for u in cap["topology"]["users"]]
    by_name = {u.name: u.id for u in users}
    nodes, names = [], {}
    for i, (name, n) in enumerate(sorted(cap["topology"]["nodes"].items()), start=1):
        ips = [ipaddress.ip_address(a) for a in (n.get("ipv4"), n.get("ipv6")) if a]
        routes = [ipaddress.ip_network(r) for r in n.get("approved_routes") or []]
        nodes.append(PolicyNode(i, by_name.get(n.get("user") or ""), ips, tuple(n.get("tags") or ()),
                                n.get("hostname", name), routes))
        names[i] = name
    return users, nodes, names


def with_auto_approved(cap: dict[str, Any], policy: Any, users: list[PolicyUser], nodes: list[PolicyNode],
                       names: dict[int, str]) -> list[PolicyNode]:
    """Effective routes = approved ones plus those autoApprovers approve (what SaaS did before capturing)."""
    cp = compile_policy(policy, users, nodes)
    out = []
    for n in nodes:
        raw = cap["topology"]["nodes"][names[n.id]].get("routable_ips") or []
        announced = [ipaddress.ip_network(r) for r in raw]
        extra = [r for r in cp.auto_approved_routes(n.id, announced) if r not in n.routes]
        out.append(replace(n, routes=tuple(n.routes) + tuple(extra)))
    return out


def tailnet_domains(cap: dict[str, Any]) -> set[str]:
    """SaaS tailnets have a domain (the owner's); it is what `user:*@domain` may name."""
    out = set()
    for c in (cap.get("captures") or {}).values():
        for owner in ((c.get("self") or {}).get("CapMap") or {}).get("tailnet-display-name") or []:
            out.add(str(owner).rpartition("@")[2])
    return out or {u["email"].rpartition("@")[2] for u in cap["topology"]["users"] if u.get("email")}


def policy_text(cap: dict[str, Any]) -> str:
    p = cap["input"]["full_policy"]
    return p if isinstance(p, str) else json.dumps(p)


def run_capture(path: Path) -> Result:
    cap = load_capture(path)
    res = Result(cap["test_id"], True)
    users, nodes, names = topology(cap)
    try:
        policy = load_policy(policy_text(cap), path.name, users, nodes, tailnet_domains(cap))
    except PolicyError as exc:
        if not cap.get("error"):
            res.ok = False
            res.problems.append(f"refused a policy SaaS accepted: {exc}")
        return res
    if cap.get("error"):
        res.ok = False
        res.problems.append(f"accepted a policy SaaS refused ({cap['input'].get('api_response_body')})")
        return res
    nodes = with_auto_approved(cap, policy, users, nodes, names)
    cp = compile_policy(policy, users, nodes)
    approved = merge(net_interval(r) for n in nodes for r in n.routes if r.prefixlen > 0)
    ids = {v: k for k, v in names.items()}
    for name, want in (cap.get("captures") or {}).items():
        nid = ids[name]
        _compare(res, name, "filter", *filter_cells(want.get("packet_filter_rules") or [],
                                                     cp.filter_for(nid), approved))
        want_peers = sorted(p["Name"].split(".")[0] for p in want.get("peers") or [])
        got_peers = sorted(names[i] for i in cp.peers_for(nid))
        _compare(res, name, "peers", want_peers, got_peers)
        _compare(res, name, "ssh", ssh_set(want.get("ssh_policy")), ssh_set(cp.ssh_for(nid)))
    res.ok = not res.problems
    return res


def _compare(res: Result, node: str, what: str, want: Any, got: Any) -> None:
    if want != got:
        res.problems.append(f"{node}: {what} differs: want {_short(want)} got {_short(got)}")


def _short(v: Any) -> str:
    text = repr(sorted(v) if isinstance(v, set | frozenset) else v)
    return text if len(text) < 400 else text[:400] + "..."


def _src(items: list[str], approved: list[Interval]) -> list[Interval]:
    ivs = merge(iv for t in items for iv in parse_range(t))
    star = merge(_SAAS_STAR + approved)
    if subtract(star, ivs) == []:
        return ALL
    return ivs


Box = tuple[int, Interval, Interval, Interval]  # protocol, source, destination, ports


def boxes(rules: list[dict[str, Any]], approved: list[Interval]) -> list[Box]:
    out = []
    for r in rules:
        protos = r.get("IPProto") or SAAS_DEFAULT_PROTOS
        src = _src(r.get("SrcIPs") or [], approved)
        for dp in r.get("DstPorts") or []:
            port = (dp["Ports"]["First"], dp["Ports"]["Last"])
            for div in parse_range(dp["IP"]):
                v6 = div[0] >= V6_BASE
                out.extend((p, s, div, port) for p in protos for s in src if _possible(p, v6))
    return out


def _possible(proto: int, v6_dst: bool) -> bool:
    """ICMPv4 (1) never carries IPv6 addresses, ICMPv6 (58) never IPv4 ones."""
    return not (proto == 1 and v6_dst) and not (proto == 58 and not v6_dst)


def filter_cells(want: list[dict[str, Any]], got: list[dict[str, Any]], approved: list[Interval]
                 ) -> tuple[dict[tuple[int, Interval, Interval], tuple[Interval, ...]], ...]:
    """Both filters as {(proto, dst cell, port cell): merged sources}, cut at the union of both sides'
    boundaries, so equal unions of boxes give equal maps whatever the rule layout."""
    bw, bg = boxes(want, approved), boxes(got, approved)
    cuts_d = sorted({b[2][0] for b in bw + bg} | {b[2][1] + 1 for b in bw + bg})
    cuts_p = sorted({b[3][0] for b in bw + bg} | {b[3][1] + 1 for b in bw + bg})
    return _cells(bw, cuts_d, cuts_p), _cells(bg, cuts_d, cuts_p)


def _cells(bx: list[tuple[int, Interval, Interval, Interval]], cuts_d: list[int], cuts_p: list[int]
           ) -> dict[tuple[int, Interval, Interval], tuple[Interval, ...]]:
    cells: dict[tuple[int, int, int], list[Interval]] = {}
    for proto, s, d, p in bx:
        for i in range(bisect.bisect_left(cuts_d, d[0]), bisect.bisect_left(cuts_d, d[1] + 1)):
            for j in range(bisect.bisect_left(cuts_p, p[0]), bisect.bisect_left(cuts_p, p[1] + 1)):
                cells.setdefault((proto, i, j), []).append(s)
    return {(proto, (cuts_d[i], cuts_d[i + 1] - 1), (cuts_p[j], cuts_p[j + 1] - 1)): tuple(merge(srcs))
            for (proto, i, j), srcs in cells.items()}


def ssh_set(policy: dict[str, Any] | None) -> frozenset[tuple[Any, ...]]:
    out = set()
    for rule in (policy or {}).get("rules") or []:
        action = rule.get("action") or {}
        kind = "accept" if action.get("accept") or action.get("holdAndDelegate") else "reject"
        env = tuple(sorted(rule.get("acceptEnv") or ()))
        for pr in rule.get("principals") or []:
            who = pr.get("nodeIP") or pr.get("node") or pr.get("userLogin") or ("*" if pr.get("any") else "")
            users = rule.get("sshUsers") or {}
            for login, local in users.items():
                if local == "" and "*" not in users:
                    continue  # an explicit "no" for a login the rule would not match anyway
                out.add((who, login, local, kind, env))
    return frozenset(out)


def run_category(category: str) -> list[Result]:
    return [run_capture(p) for p in sorted((VECTORS / category).glob("*.json"))]
