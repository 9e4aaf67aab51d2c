"""Policy compile benchmark: 10,000 nodes, 1,000 ACL rules. Prints numbers; asserts nothing.

    PYTHONPATH=. /work/venv/bin/python bench/policy_compile.py [--nodes N] [--rules R] [--seed S]

Topology: 500 users x 20 nodes, a fifth of the nodes tagged (100 tags), 50 groups of 10 users, some subnet
routers. Rules mix users, groups, tags, autogroups, `*` (1% of aliases; none with --no-broad), hosts and
CIDRs on both sides, a few autogroup:self rules, and port lists. Measured:
- parse+validate (load_policy), full compile (compile_policy: resolve every alias over every node),
- first query of one node (filter_for + peers_for + ssh_for), and all nodes (what a full map push costs),
- one node's change (update_node: a tag added or removed, 20 random nodes), then that node's filter and
  peers again; plus, for two of them, re-rendering every affected node (the ids update_node returns).
The machine may be shared: compile is repeated and the changes sampled, min/median/max are printed.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from pyscale.policy import PolicyNode, PolicyUser, compile_policy, load_policy  # noqa: E402


def topology(n_nodes: int, rnd: random.Random) -> tuple[list[PolicyUser], list[PolicyNode]]:
    users = [PolicyUser(u, f"user{u}", f"user{u}@example.com") for u in range(1, 501)]
    nodes = []
    for i in range(1, n_nodes + 1):
        v4 = ipaddress.IPv4Address(int(ipaddress.IPv4Address("100.64.0.0")) + i)
        v6 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("fd7a:115c:a1e0::")) + i)
        tags = (f"tag:t{rnd.randrange(100)}",) if rnd.random() < 0.2 else ()
        routes = (ipaddress.ip_network(f"10.{i % 250}.{i // 250 % 250}.0/24"),) if i % 500 == 0 else ()
        nodes.append(PolicyNode(i, 1 + (i - 1) // 20, [v4, v6], tags, f"node{i}", routes))
    return users, nodes


def policy_text(n_rules: int, rnd: random.Random, broad: bool = True) -> str:
    groups = {f"group:g{g}": [f"user{u}@example.com" for u in range(g * 10 + 1, g * 10 + 11)]
              for g in range(50)}
    tag_owners = {f"tag:t{t}": ["group:g0"] for t in range(100)}
    hosts = {f"h{h}": f"10.{h}.0.0/16" for h in range(20)}

    def alias() -> str:
        r = rnd.random()
        if r < 0.40:
            return f"group:g{rnd.randrange(50)}"
        if r < 0.70:
            return f"tag:t{rnd.randrange(100)}"
        if r < 0.90:
            return f"user{rnd.randrange(1, 501)}@example.com"
        if r < 0.95:
            return f"h{rnd.randrange(20)}"
        if r < 0.99:
            return f"100.64.{rnd.randrange(40)}.0/24"
        if broad:
            return rnd.choice(["autogroup:member", "autogroup:tagged", "*"])
        return f"tag:t{rnd.randrange(100)}"

    acls = []
    for i in range(n_rules):
        ports = rnd.choice(["22", "80,443", "8000-8100", "*", "5432"])
        dst = [f"{alias()}:{ports}" for _ in range(rnd.randrange(1, 4))]
        if i % 100 == 0:
            dst.append("autogroup:self:*")
            src = [f"group:g{rnd.randrange(50)}"]
        else:
            src = [alias() for _ in range(rnd.randrange(1, 4))]
        acls.append({"action": "accept", "src": src, "dst": dst} | ({"proto": "tcp"} if i % 7 == 0 else {}))
    ssh = [{"action": "accept", "src": [f"group:g{g}"], "dst": [f"tag:t{g}"],
            "users": ["root", "autogroup:nonroot"]} for g in range(20)]
    return json.dumps({"groups": groups, "tagOwners": tag_owners, "hosts": hosts, "acls": acls, "ssh": ssh},
                      indent=1)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--rules", type=int, default=1_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="full compiles to time (min and median printed)")
    ap.add_argument("--changes", type=int, default=20, help="single-node changes to time")
    ap.add_argument("--no-broad", action="store_true",
                    help="no `*` / autogroup:member / autogroup:tagged aliases (sparser peer graph)")
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    users, nodes = topology(args.nodes, rnd)
    text = policy_text(args.rules, rnd, broad=not args.no_broad)

    t0 = time.perf_counter()
    policy = load_policy(text, "bench.json")
    t1 = time.perf_counter()
    compiles = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        cp = compile_policy(policy, users, nodes)
        compiles.append(time.perf_counter() - t)
    t2 = time.perf_counter()
    probe = nodes[len(nodes) // 2].id
    cp.filter_for(probe), cp.peers_for(probe), cp.ssh_for(probe)
    t3 = time.perf_counter()
    print(f"nodes={len(nodes)} rules={args.rules} aliases={len(cp.targets)} policy={len(text)} bytes")
    print(f"parse+validate (load_policy)        {ms(t1 - t0)}")
    print(f"full compile (compile_policy)       {ms(min(compiles))} min, "
          f"{ms(statistics.median(compiles))} median of {len(compiles)}   bar <= 1000 ms")
    print(f"first queries for one node          {ms(t3 - t2)}")

    t4 = time.perf_counter()
    for n in nodes:
        cp.filter_for(n.id), cp.peers_for(n.id), cp.ssh_for(n.id)
    t5 = time.perf_counter()
    rules = sum(len(cp.filter_for(n.id)) for n in nodes) / len(nodes)
    peers = sum(len(cp.peers_for(n.id)) for n in nodes) / len(nodes)
    print(f"all nodes' filter+peers+ssh         {ms(t5 - t4)}   "
          f"(avg {rules:.1f} rules, {peers:.0f} peers per node)")

    updates, queries, affected_sizes, rerenders = [], [], [], []
    for k in range(args.changes):
        old = nodes[rnd.randrange(len(nodes))]
        tags = () if old.tags else (f"tag:t{rnd.randrange(100)}",)
        new = PolicyNode(old.id, old.user_id, old.ips, tags, old.hostname, old.routes)
        t = time.perf_counter()
        affected = cp.update_node(new)
        updates.append(time.perf_counter() - t)
        t = time.perf_counter()
        cp.filter_for(new.id), cp.peers_for(new.id), cp.ssh_for(new.id)
        queries.append(time.perf_counter() - t)
        affected_sizes.append(len(affected))
        if k < 2:  # re-rendering every affected node is slow; sample it
            t = time.perf_counter()
            for i in affected:
                cp.filter_for(i), cp.peers_for(i), cp.ssh_for(i)
            rerenders.append((time.perf_counter() - t, len(affected)))
    print(f"one node's change (update_node)     {ms(statistics.median(updates))} median, "
          f"{ms(max(updates))} max of {len(updates)}   bar <= 50 ms")
    print(f"  nodes affected per change         median {statistics.median(affected_sizes):.0f}")
    print(f"  + that node's filter/peers/ssh    {ms(statistics.median(queries))} median")
    for seconds, count in rerenders:
        per_node = seconds / max(count, 1) * 1000
        print(f"  + re-render all {count:5d} affected  {ms(seconds)}   ({per_node:.2f} ms/node)")


if __name__ == "__main__":
    main()
