"""Tailscale's `tests` and `sshTests` policy sections, evaluated against the compiled policy.

A test names one source (an alias or IP) and destinations; it holds when every address of the source may
(accept) or may not (deny) reach every destination address on the given port. As in Tailscale SaaS a test
destination must be one port on concrete hosts (nodes, or a single IP): port lists, ranges, `*`, CIDRs and
aliases that resolve to nothing make the test fail. SSH tests check the login names each source may use on
each destination node (`accept`, `check`) or may not (`deny`); `check` rules count as allowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from .aliases import Alias, Kind, parse_alias, parse_destination, parse_network
from .compiler import CompiledPolicy, compile_policy
from .errors import PolicyTestError
from .ipset import Interval, addr_key, parse_range
from .model import AclTest, Policy, SshTest
from .topology import PolicyNode, PolicyUser

TEST_PROTOCOL_DEFAULT = (6,)  # a test without `proto` is about TCP


class _Failed(Exception):
    pass


def check_policy_tests(policy: Policy, users: Iterable[PolicyUser], nodes: Iterable[PolicyNode],
                       compiled: CompiledPolicy | None = None) -> None:
    """Raise PolicyTestError naming the first `tests`/`sshTests` entry that does not hold."""
    if not policy.tests and not policy.ssh_tests:
        return
    cp = compiled or compile_policy(policy, users, nodes)
    ev = _Evaluator(cp)
    for test in policy.tests:
        try:
            ev.acl_test(test)
        except _Failed as exc:
            raise _error(policy, test.path, f"test {test.path[1]} (src {test.src!r}) failed: {exc}") from None
    for stest in policy.ssh_tests:
        try:
            ev.ssh_test(stest)
        except _Failed as exc:
            raise _error(policy, stest.path,
                         f"sshTest {stest.path[1]} (src {stest.src!r}) failed: {exc}") from None


def _error(policy: Policy, path: tuple[Any, ...], message: str) -> PolicyTestError:
    line, col = policy.positions.at(path) if policy.positions else (0, 0)
    return PolicyTestError(message, policy.filename, line, col)


class _Evaluator:
    def __init__(self, cp: CompiledPolicy) -> None:
        self.cp = cp
        self.owner = {k: n.id for n in cp.nodes.values() for k in n.ip_keys}
        self.parsed: dict[int, list[tuple[list[Interval], list[tuple[Interval, int, int]], set[int]]]] = {}

    # -- aliases ------------------------------------------------------------------------------------------

    def alias(self, text: str) -> Alias:
        try:
            alias = parse_alias(text.strip())
        except ValueError as exc:
            raise _Failed(str(exc)) from None
        pol = self.cp.policy
        assert pol is not None
        known: dict[Kind, set[str]] = {Kind.GROUP: set(pol.groups), Kind.TAG: set(pol.tag_owners),
                                       Kind.HOST: set(pol.hosts)}
        if alias.kind in known and alias.name not in known[alias.kind]:
            raise _Failed(f"{alias.name!r} is not defined")
        if alias.kind is Kind.PREFIX and alias.network is not None and "/" in text:
            raise _Failed(f"{text!r}: tests need hosts, not prefixes")
        if alias.name in ("autogroup:internet", "autogroup:self") or alias.kind is Kind.WILDCARD:
            raise _Failed(f"{text!r} cannot be tested")
        return alias

    def addresses(self, alias: Alias) -> list[int]:
        """Concrete addresses an alias stands for in this topology."""
        if alias.kind is Kind.PREFIX and alias.network is not None:
            return [addr_key(alias.network.network_address)]
        if alias.kind is Kind.HOST:
            net = self.cp.policy.hosts[alias.name]  # type: ignore[union-attr]
            if net.num_addresses != 1:
                raise _Failed(f"host {alias.name!r} is a prefix, not a host")
            return [addr_key(net.network_address)]
        target = self.cp.target(alias)
        keys = [k for i in sorted(target.nodes) for k in self.cp.nodes[i].ip_keys]
        if not keys:
            raise _Failed(f"{alias.name!r} matches no node")
        return keys

    # -- ACL tests ----------------------------------------------------------------------------------------

    def acl_test(self, test: AclTest) -> None:
        if not test.accept and not test.deny:
            raise _Failed("a test needs accept or deny")
        srcs = self.addresses(self.alias(test.src))
        protocols = test.protocols if test.protocols != (6, 17) else TEST_PROTOCOL_DEFAULT
        for want, dsts in ((True, test.accept), (False, test.deny)):
            for dst in dsts:
                alias, port = self.destination(dst)
                for d in self.addresses(alias):
                    for s in srcs:
                        for proto in protocols:
                            if self.allowed(s, d, port, proto) != want:
                                verb = "allowed" if not want else "denied"
                                raise _Failed(f"{_ip(s)} -> {dst} ({_ip(d)}) proto {proto} is {verb}")

    def destination(self, text: str) -> tuple[Alias, int]:
        bracketed = text.startswith("[") and "]:" in text
        if bracketed:
            host, _, port_s = text[1:].partition("]:")
            net = parse_network(host)
            if net is None:
                raise _Failed(f"bad destination {text!r}")
            text = f"{host}:{port_s}"
        try:
            _, ports = parse_destination(text)
        except ValueError as exc:
            raise _Failed(str(exc)) from None
        if len(ports) != 1 or ports[0][0] != ports[0][1]:
            raise _Failed(f"{text!r}: a test names exactly one port")
        return self.alias(text.rpartition(":")[0]), ports[0][0]

    def allowed(self, src: int, dst: int, port: int, proto: int) -> bool:
        node_id = self.owner.get(dst)
        if node_id is None:
            return self._allowed_global(src, dst, port, proto)
        for srcs, dports, protos in self._parsed(node_id):
            if proto in protos and _inside(src, srcs) and any(
                    iv[0] <= dst <= iv[1] and first <= port <= last for iv, first, last in dports):
                return True
        return False

    def _allowed_global(self, src: int, dst: int, port: int, proto: int) -> bool:
        """A destination outside the tailnet's nodes: match literal prefixes of the rules."""
        for rule in self.cp.rules:
            if proto not in rule.acl.protocols:
                continue
            srcs = [iv for r in parse_ranges(self.cp.render_src(rule.src)) for iv in [r]]
            if not _inside(src, srcs):
                continue
            for t, ports in rule.dst:
                hit = t.wildcard or any(iv[0] <= dst <= iv[1] for iv in t.prefixes)
                if hit and any(a <= port <= b for a, b in ports):
                    return True
        return False

    def _parsed(self, node_id: int) -> list[tuple[list[Interval], list[tuple[Interval, int, int]], set[int]]]:
        if node_id not in self.parsed:
            self.parsed[node_id] = [
                (parse_ranges(r["SrcIPs"]),
                 [(iv, p["Ports"]["First"], p["Ports"]["Last"])
                  for p in r["DstPorts"] for iv in parse_range(p["IP"])],
                 set(r.get("IPProto") or (6, 17, 1, 58)))
                for r in self.cp.filter_for(node_id)]
        return self.parsed[node_id]

    # -- SSH tests ----------------------------------------------------------------------------------------

    def ssh_test(self, test: SshTest) -> None:
        if not (test.accept or test.check or test.deny):
            raise _Failed("an sshTest needs accept, check or deny")
        srcs = self.addresses(self.alias(test.src))
        dst_nodes = [n for d in test.dst for n in self.ssh_dst(d)]
        for want, logins in ((True, test.accept + test.check), (False, test.deny)):
            for login in logins:
                if not login:
                    raise _Failed("empty login name")
                for node_id in dst_nodes:
                    for s in srcs:
                        if self.ssh_allowed(s, node_id, login) != want:
                            verb = "allowed" if not want else "denied"
                            raise _Failed(f"{_ip(s)} as {login!r} on node {node_id} is {verb}")

    def ssh_dst(self, text: str) -> list[int]:
        net = parse_network(text)
        if net is not None:
            if "/" in text:
                raise _Failed(f'SSH tests dst contains disallowed element "{text}"')
            node_id = self.owner.get(addr_key(net.network_address))
            if node_id is None:
                raise _Failed(f"{text!r} is no node")
            return [node_id]
        alias = self.alias(text)
        if alias.kind is Kind.HOST:
            keys = self.addresses(alias)
            owners = sorted({self.owner[k] for k in keys if k in self.owner})
            if not owners:
                raise _Failed(f"{text!r} is no node")
            return owners
        target = self.cp.target(alias)
        if not target.nodes:
            raise _Failed(f"{text!r} matches no node")
        return sorted(target.nodes)

    def ssh_allowed(self, src: int, node_id: int, login: str) -> bool:
        policy = self.cp.ssh_for(node_id) or {"rules": []}
        ip = _ip(src)
        for rule in policy["rules"]:
            if not any(p.get("nodeIP") == ip for p in rule["principals"]):
                continue
            users = rule["sshUsers"]
            mapped = users[login] if login in users else users.get("*", "")
            if mapped:
                return bool(rule["action"].get("accept"))
        return False


def parse_ranges(items: Iterable[str]) -> list[Interval]:
    return [iv for text in items for iv in parse_range(text)]


def _inside(key: int, ivs: list[Interval]) -> bool:
    return any(lo <= key <= hi for lo, hi in ivs)


def _ip(key: int) -> str:
    return str(ipaddress.ip_address(key)) if key < (1 << 32) else str(ipaddress.IPv6Address(key - (1 << 128)))
