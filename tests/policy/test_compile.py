"""Compiler: filter shape, peers, SSH, auto-approval; incremental updates equal a fresh compile;
determinism."""

from __future__ import annotations

import ipaddress
import json
import random
from typing import Any

import pytest

from pyscale.policy import CompiledPolicy, PolicyNode, PolicyUser, compile_policy, load_policy

ip = ipaddress.ip_address
net = ipaddress.ip_network
ALICE, BOB = PolicyUser(1, "alice", "alice@example.com"), PolicyUser(2, "bob", "bob@example.com")
USERS = [ALICE, BOB]


def node(i: int, user: int | None, tags: tuple[str, ...] = (), routes: tuple[str, ...] = ()) -> PolicyNode:
    return PolicyNode(i, user, [ip(f"100.64.0.{i}"), ip(f"fd7a:115c:a1e0::{i:x}")], tags, f"n{i}",
                      tuple(net(r) for r in routes))


A1, A2, B1 = node(1, 1), node(2, 1), node(3, 2)
SRV = node(4, 2, ("tag:srv",))
ROUTER = node(5, 2, ("tag:router",), ("10.1.0.0/16", "0.0.0.0/0", "::/0"))
NODES = [A1, A2, B1, SRV, ROUTER]
OWNERS = '"tagOwners": {"tag:srv": ["bob@"], "tag:router": ["bob@"]}'


def compiled(acls: str, extra: str = "", nodes: list[PolicyNode] | None = None) -> CompiledPolicy:
    text = "{" + OWNERS + (', "acls": ' + acls if acls else "") + extra + "}"
    return compile_policy(load_policy(text, "t.hujson"), USERS, nodes or NODES)


def test_no_policy_allows_all_and_everyone_sees_everyone() -> None:
    for cp in (compile_policy(None, USERS, NODES), compiled("")):
        assert cp.filter_for(1) == [
            {"SrcIPs": ["*"], "DstPorts": [{"IP": "*", "Ports": {"First": 0, "Last": 65535}}]}]
        assert cp.peers_for(1) == {2, 3, 4, 5}
        assert cp.ssh_for(1) is None


def test_empty_acls_deny_everything() -> None:
    cp = compiled("[]")
    assert all(cp.filter_for(n.id) == [] and cp.peers_for(n.id) == set() for n in NODES)


def test_alice_may_reach_bob_only() -> None:
    cp = compiled('[{"action": "accept", "src": ["alice@"], "dst": ["bob@example.com:80,443"]}]')
    assert cp.filter_for(3) == [{
        "SrcIPs": ["100.64.0.1/32", "100.64.0.2/32", "fd7a:115c:a1e0::1/128", "fd7a:115c:a1e0::2/128"],
        "DstPorts": [{"IP": ip_, "Ports": {"First": p, "Last": p}}
                     for ip_ in ("100.64.0.3/32", "fd7a:115c:a1e0::3/128") for p in (80, 443)],
        "IPProto": [6, 17]}]
    assert cp.filter_for(1) == [] and cp.filter_for(4) == []
    assert cp.peers_for(1) == {3} and cp.peers_for(3) == {1, 2} and cp.peers_for(4) == set()


def test_protocols_and_wildcards() -> None:
    cp = compiled('[{"action": "accept", "proto": "icmp", "src": ["*"], "dst": ["tag:srv:*"]}]')
    assert cp.filter_for(4) == [{"SrcIPs": ["0.0.0.0/0", "::/0"],
                                 "DstPorts": [{"IP": a, "Ports": {"First": 0, "Last": 65535}}
                                              for a in ("100.64.0.4/32", "fd7a:115c:a1e0::4/128")],
                                 "IPProto": [1, 58]}]
    assert cp.peers_for(4) == {1, 2, 3, 5}


def test_autogroup_self_reaches_only_own_untagged_nodes() -> None:
    cp = compiled('[{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:22"]}]')
    rules = cp.filter_for(1)
    assert len(rules) == 1
    assert rules[0]["SrcIPs"] == ["100.64.0.1/32", "100.64.0.2/32",
                                  "fd7a:115c:a1e0::1/128", "fd7a:115c:a1e0::2/128"]
    assert [d["IP"] for d in rules[0]["DstPorts"]] == ["100.64.0.1/32", "fd7a:115c:a1e0::1/128"]
    assert cp.peers_for(1) == {2} and cp.peers_for(3) == set() and cp.filter_for(4) == []


def test_subnet_routes_and_exit_nodes() -> None:
    cp = compiled('[{"action": "accept", "src": ["alice@"],'
                  ' "dst": ["10.1.2.0/24:22", "autogroup:internet:443"]}]')
    dsts = [d["IP"] for r in cp.filter_for(5) for d in r["DstPorts"]]
    assert "10.1.2.0/24" in dsts and "8.8.8.0/21" not in dsts and "11.0.0.0/8" in dsts
    assert "10.0.0.0/8" not in dsts and "100.64.0.0/10" not in dsts
    assert cp.peers_for(1) == {5} and cp.peers_for(5) == {1, 2}
    assert cp.filter_for(3) == []


def test_ssh_policy_shape() -> None:
    cp = compiled('[]', ', "ssh": [{"action": "check", "checkPeriod": "2h", "src": ["alice@"], '
                        '"dst": ["tag:srv"], "users": ["root", "autogroup:nonroot"]}]')
    assert cp.ssh_for(1) == {"rules": []}
    rule = cp.ssh_for(4)["rules"][0]  # type: ignore[index]
    assert rule["principals"] == [{"nodeIP": a} for a in
                                  ("100.64.0.1", "fd7a:115c:a1e0::1", "100.64.0.2", "fd7a:115c:a1e0::2")]
    assert rule["sshUsers"] == {"root": "root", "*": "="}
    assert rule["action"] == {"accept": True, "allowAgentForwarding": True, "allowLocalPortForwarding": True,
                              "allowRemotePortForwarding": True, "sessionDuration": 7200 * 10**9}


def test_auto_approvers() -> None:
    cp = compiled('[]', ', "autoApprovers": {"routes": {"10.0.0.0/8": ["tag:router"], "192.168.0.0/16": '
                        '["alice@"]}, "exitNode": ["tag:router"]}')
    announced = [net("10.1.0.0/16"), net("10.0.0.0/7"), net("0.0.0.0/0"), net("192.168.1.0/24")]
    assert cp.auto_approved_routes(5, announced) == [net("10.1.0.0/16"), net("0.0.0.0/0")]
    assert cp.auto_approved_routes(1, announced) == [net("192.168.1.0/24")]
    assert cp.auto_approved_routes(3, announced) == []


# -- incremental == fresh ----------------------------------------------------------------------------------

RANDOM_POLICY = """{
  "groups": {"group:a": ["alice@"], "group:ab": ["alice@", "bob@"]},
  "hosts": {"lan": "10.0.0.0/8", "one": "100.64.0.7"},
  "tagOwners": {"tag:x": ["bob@"], "tag:y": ["bob@"], "tag:r": ["bob@"]},
  "acls": [
    {"action": "accept", "src": ["group:a"], "dst": ["tag:x:22", "bob@:80"]},
    {"action": "accept", "src": ["tag:y", "one"], "dst": ["autogroup:member:443"]},
    {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]},
    {"action": "accept", "src": ["lan"], "dst": ["tag:y:*"]},
    {"action": "accept", "proto": "udp", "src": ["*"], "dst": ["lan:53", "autogroup:internet:*"]},
    {"action": "accept", "src": ["100.64.0.0/28"], "dst": ["autogroup:tagged:8080"]},
  ],
  "ssh": [{"action": "accept", "src": ["group:ab"], "dst": ["tag:x", "autogroup:self"], "users": ["root"]},
          {"action": "accept", "src": ["autogroup:member"], "dst": ["tag:y"],
           "users": ["localpart:*@example.com"]}],
}"""


def random_node(rnd: random.Random, i: int) -> PolicyNode:
    tags: tuple[str, ...] = ()
    if rnd.random() < 0.4:
        tags = tuple(sorted(rnd.sample(["tag:x", "tag:y", "tag:r"], rnd.randrange(3))))
    routes = rnd.choice([(), (), ("10.2.0.0/16",), ("0.0.0.0/0", "::/0"), ("192.168.0.0/24",)])
    host = rnd.choice([i, i, 7, i + 20])  # some nodes move address, one sometimes takes host "one"'s
    return PolicyNode(i, rnd.choice([1, 2]), [ip(f"100.64.0.{host}"), ip(f"fd7a:115c:a1e0::{host:x}")], tags,
                      f"n{i}", tuple(net(r) for r in routes))


def snapshot(cp: CompiledPolicy) -> dict[int, Any]:
    return {i: (json.dumps(cp.filter_for(i), sort_keys=True), sorted(cp.peers_for(i)),
                json.dumps(cp.ssh_for(i), sort_keys=True)) for i in sorted(cp.nodes)}


@pytest.mark.parametrize("seed", range(6))
def test_incremental_updates_equal_a_fresh_compile(seed: int) -> None:
    """Invariant: after any sequence of update_node/remove_node, every node's filter, peers and SSH policy
    equal those of a fresh compile of the same topology, and every node whose output changed was reported."""
    rnd = random.Random(seed)
    policy = load_policy(RANDOM_POLICY, "r.hujson")
    nodes = {i: random_node(rnd, i) for i in range(1, 13)}
    cp = compile_policy(policy, USERS, nodes.values())
    before = snapshot(cp)
    for _step in range(40):
        i = rnd.randrange(1, 16)
        if rnd.random() < 0.2 and i in nodes:
            del nodes[i]
            affected = cp.remove_node(i)
        else:
            nodes[i] = random_node(rnd, i)
            affected = cp.update_node(nodes[i])
        after = snapshot(cp)
        fresh = snapshot(compile_policy(policy, USERS, nodes.values()))
        assert after == fresh
        changed = {k for k in after if after[k] != before.get(k)}
        assert changed <= affected | ({i} if i in nodes else set())
        before = after


def test_compile_is_deterministic_whatever_the_node_order() -> None:
    rnd = random.Random(9)
    policy = load_policy(RANDOM_POLICY, "r.hujson")
    nodes = [random_node(rnd, i) for i in range(1, 20)]
    first = snapshot(compile_policy(policy, USERS, nodes))
    for _ in range(3):
        rnd.shuffle(nodes)
        assert snapshot(compile_policy(policy, USERS, nodes)) == first
