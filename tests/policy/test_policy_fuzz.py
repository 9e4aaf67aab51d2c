"""Random policies built from policy-shaped pieces (right and wrong types, known and unknown names):
loading returns a Policy or raises PolicyError, and whatever loads compiles and answers every query."""

from __future__ import annotations

import ipaddress
import json
import random
from typing import Any

import pytest

from pyscale.policy import PolicyError, PolicyNode, PolicyUser, compile_policy, load_policy

USERS = [PolicyUser(1, "alice", "alice@example.com"), PolicyUser(2, "bob", "bob@example.org")]
NODES = [PolicyNode(i, 1 + i % 2, [ipaddress.ip_address(f"100.64.0.{i}"), ipaddress.ip_address(f"fd7a::{i}")],
                    ("tag:a",) if i % 3 == 0 else (), f"n{i}",
                    (ipaddress.ip_network("10.0.0.0/24"),) if i == 4 else ()) for i in range(1, 8)]

ALIASES = ["*", "alice@", "bob@example.org", "ghost@", "group:g", "group:none", "tag:a", "tag:none", "h",
           "nohost", "10.0.0.0/8", "100.64.0.1", "fd7a::2", "autogroup:member", "autogroup:tagged",
           "autogroup:self", "autogroup:internet", "autogroup:nonroot", "autogroup:bogus",
           "user:*@example.com", "", " ", "a:b:c", "[::1]"]
PORTS = ["*", "22", "80,443", "1-65535", "0", "70000", "x", "5-1", "", "22,"]
VALID_ALIASES = ["*", "alice@", "bob@example.org", "group:g", "tag:a", "h", "10.0.0.0/8", "100.64.0.1",
                 "autogroup:member", "autogroup:tagged"]
LOGINS = ["root", "autogroup:nonroot", "ubuntu", "localpart:*@example.com"]
JUNK: list[Any] = [None, 1, -1, 2.5, True, "", "x", [], {}, ["x"], {"k": "v"}]


def pick(rnd: random.Random, good: Any) -> Any:
    return good if rnd.random() < 0.97 else rnd.choice(JUNK)


def alias(rnd: random.Random) -> str:
    return rnd.choice(VALID_ALIASES if rnd.random() < 0.9 else ALIASES)


def port(rnd: random.Random) -> str:
    return rnd.choice(PORTS[:4] if rnd.random() < 0.9 else PORTS)


def acl(rnd: random.Random) -> Any:
    entry = {"action": pick(rnd, rnd.choice(["accept"] * 9 + ["deny"])),
             "src": pick(rnd, [alias(rnd) for _ in range(rnd.randrange(3))]),
             "dst": pick(rnd, [f"{rnd.choice(ALIASES)}:{port(rnd)}" for _ in range(rnd.randrange(3))])}
    if rnd.random() < 0.3:
        protos = ["tcp", "udp", "6", "TCP", "", "icmp", "0", "300"]
        entry["proto"] = pick(rnd, rnd.choice(protos[: 5 if rnd.random() < 0.9 else 8]))
    if rnd.random() < 0.05:
        entry[rnd.choice(["#meta", "extra"])] = 1
    return pick(rnd, entry)


def ssh(rnd: random.Random) -> Any:
    return pick(rnd, {
        "action": pick(rnd, rnd.choice(["accept", "check"] * 5 + ["Accept", ""])),
        "src": pick(rnd, [alias(rnd) for _ in range(rnd.randrange(3))]),
        "dst": pick(rnd, [alias(rnd) for _ in range(rnd.randrange(3))]),
        "users": pick(rnd, [rnd.choice(LOGINS * 3 + ["", "*"]) for _ in range(rnd.randrange(3))]),
        **({"checkPeriod": pick(rnd, rnd.choice(["1h", "always", "30s"] * 3 + ["-1m", "999h", "abc"]))}
           if rnd.random() < 0.3 else {}),
    })


def policy(rnd: random.Random) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "groups": pick(rnd, {"group:g": pick(rnd, ["alice@", rnd.choice(["bob@example.org"] * 8 + ["group:g",
                                                                                                     "x"])])}),
        "hosts": pick(rnd, {"h": pick(rnd, rnd.choice(["100.64.0.3", "10.0.0.0/16"] * 4 + ["nope"]))}),
        "tagOwners": pick(rnd, {"tag:a": pick(rnd, ["alice@"]), rnd.choice(["tag:b"] * 8 + ["tag:9"]): []}),
        "acls": pick(rnd, [acl(rnd) for _ in range(rnd.randrange(4))]),
        "ssh": pick(rnd, [ssh(rnd) for _ in range(rnd.randrange(3))]),
        "autoApprovers": pick(rnd, {"routes": pick(rnd, {rnd.choice(["10.0.0.0/8"] * 8 + ["x", "10.0.0.1"]):
                                                         pick(rnd, ["tag:a"])}),
                                    "exitNode": pick(rnd, [rnd.choice(ALIASES)])}),
    }
    for key in list(doc):
        if rnd.random() < 0.3:
            del doc[key]
    if rnd.random() < 0.1:
        doc[rnd.choice(["nodeAttrs", "ACLS", "Hosts"])] = []
    return doc


@pytest.mark.parametrize("seed", range(4))
def test_random_policies_load_or_raise_policy_error_and_compile(seed: int) -> None:
    rnd = random.Random(seed)
    loaded = 0
    for _ in range(400):
        text = json.dumps(policy(rnd))
        try:
            pol = load_policy(text, "fuzz.json", USERS, NODES)
        except PolicyError as exc:
            assert exc.filename == "fuzz.json" and exc.message
            continue
        loaded += 1
        cp = compile_policy(pol, USERS, NODES)
        for n in NODES:
            assert isinstance(cp.filter_for(n.id), list)
            assert n.id not in cp.peers_for(n.id)
            cp.ssh_for(n.id)
            cp.auto_approved_routes(n.id, [ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("::/0")])
        json.dumps([cp.filter_for(n.id) for n in NODES])
    assert loaded >= 5  # the generator does produce valid policies, so compile is exercised
