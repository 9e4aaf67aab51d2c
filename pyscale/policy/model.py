"""Policy model: HuJSON value -> typed, validated `Policy`.

Validation is strict, like Headscale v0.27.1 (top-level and entry keys are matched case-insensitively and
unknown ones refused; groups, tags and hosts must be defined before use; ports and protocols checked), plus
the rules Tailscale SaaS enforces that v0.27.1 misses (`autogroup:self` only with user-like sources, tag names
starting with a letter, SSH `checkPeriod` limits, recursive groups). Two Tailscale sections v0.27.1 lacks are
accepted on purpose: `tests`/`sshTests` (run at load, see checks.py) and IP-only `grants`, which are the same
thing as `acls` written differently. Every error names file, line and column of the offending value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .aliases import (
    ALL_PORTS,
    PORT_PROTOCOLS,
    Alias,
    Kind,
    Network,
    parse_alias,
    parse_destination,
    parse_network,
    parse_ports,
    parse_protocol,
)
from .errors import PolicyError
from .hujson import Path, Positions, is_blank, parse

MAX_CHECK_PERIOD_S = 168 * 3600  # Tailscale's upper bound for SSH checkPeriod
_TAG_NAME = re.compile(r"^tag:[A-Za-z][A-Za-z0-9_-]*$")
_GO_DURATION = re.compile(r"^([-+]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$")
_GO_UNIT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class AclRule:
    """One accept rule: sources x (destination alias, port ranges) over protocols. `path` locates it."""

    src: tuple[Alias, ...]
    dst: tuple[tuple[Alias, tuple[tuple[int, int], ...]], ...]
    protocols: tuple[int, ...]
    path: Path


@dataclass(frozen=True)
class SshRule:
    action: str  # "accept" | "check"
    src: tuple[Alias, ...]
    dst: tuple[Alias, ...]
    users: tuple[str, ...]
    check_period_s: float | None  # None: Tailscale's default (12h); only meaningful for "check"
    accept_env: tuple[str, ...]
    path: Path


@dataclass(frozen=True)
class AclTest:
    src: str
    protocols: tuple[int, ...]
    accept: tuple[str, ...]
    deny: tuple[str, ...]
    path: Path


@dataclass(frozen=True)
class SshTest:
    src: str
    dst: tuple[str, ...]
    accept: tuple[str, ...]
    check: tuple[str, ...]
    deny: tuple[str, ...]
    path: Path


@dataclass
class Policy:
    """A validated policy. `acls is None` means the file had no `acls`/`grants`: allow everything."""

    filename: str
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    hosts: dict[str, Network] = field(default_factory=dict)
    tag_owners: dict[str, tuple[str, ...]] = field(default_factory=dict)
    acls: list[AclRule] | None = None
    ssh: list[SshRule] | None = None
    route_approvers: dict[Network, tuple[Alias, ...]] = field(default_factory=dict)
    exit_approvers: tuple[Alias, ...] = ()
    tests: list[AclTest] = field(default_factory=list)
    ssh_tests: list[SshTest] = field(default_factory=list)
    positions: Positions | None = None
    domain_refs: list[tuple[str, Path]] = field(default_factory=list)  # user:*@d / localpart:*@d uses

    def check_domains(self, domains: Iterable[str]) -> None:
        """Refuse `user:*@domain` / `localpart:*@domain` naming a domain not of this tailnet (as SaaS)."""
        known = set(domains)
        for domain, path in self.domain_refs:
            if domain and domain not in known:
                raise self.error(f"{domain} is not associated with this Tailnet and cannot be used in "
                                 "user:*@<domain> expressions", path)

    def may_own_tag(self, tag: str, user_name: str, user_email: str = "", _seen: frozenset[str] = frozenset()
                    ) -> bool:
        """May this user set `tag` (tagOwners: users, groups, or tags whose owners may)?"""
        for owner in self.tag_owners.get(tag, ()):
            if owner.startswith("tag:"):
                if owner not in _seen and self.may_own_tag(owner, user_name, user_email, _seen | {tag}):
                    return True
                continue
            members = self.groups.get(owner, ()) if owner.startswith("group:") else (owner,)
            for m in members:
                bare = m[:-1] if m.endswith("@") else m
                if m in (user_email, user_name) or bare == user_name:
                    return True
        return False

    def error(self, message: str, path: Path) -> PolicyError:
        if self.positions is None:
            return PolicyError(message, self.filename)
        return self.positions.error(message, path)


_TOP = {k.lower(): k for k in ("groups", "hosts", "tagOwners", "acls", "autoApprovers", "ssh", "tests",
                               "sshTests", "grants")}
_ACL = {k.lower(): k for k in ("action", "proto", "src", "dst")}
_GRANT = {k.lower(): k for k in ("src", "dst", "ip")}
_SSH = {k.lower(): k for k in ("action", "src", "dst", "users", "checkPeriod", "acceptEnv")}
_APPROVERS = {k.lower(): k for k in ("routes", "exitNode")}
_TEST = {k.lower(): k for k in ("src", "proto", "accept", "deny")}
_SSHTEST = {k.lower(): k for k in ("src", "dst", "accept", "check", "deny")}


class _Loader:
    def __init__(self, pos: Positions) -> None:
        self.pos = pos

    def err(self, message: str, path: Path, key: bool = False) -> PolicyError:
        return self.pos.error(message, path, key)

    def members(self, value: Any, path: Path, allowed: dict[str, str],
                comments: bool = False) -> dict[str, Any]:
        """Object with case-insensitive known keys -> {canonical key: value}; unknown keys are refused."""
        if not isinstance(value, dict):
            raise self.err("expected an object", path)
        out: dict[str, Any] = {}
        for key, val in value.items():
            if comments and key.startswith("#"):
                continue  # headscale-admin keeps metadata in '#'-keys of ACL entries
            canonical = allowed.get(key.lower())
            if canonical is None:
                raise self.err(f'unknown field "{key}"', path + (key,), key=True)
            if canonical in out:
                raise self.err(f'duplicate field "{key}"', path + (key,), key=True)
            out[canonical] = val
        return out

    def strings(self, value: Any, path: Path, what: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.err(f"{what} must be a list of strings", path)
        return list(value)

    def string(self, value: Any, path: Path, what: str) -> str:
        if not isinstance(value, str):
            raise self.err(f"{what} must be a string", path)
        return value


def load_policy(text: str, filename: str = "<policy>") -> Policy | None:
    """Parse and validate a policy; `None` for an empty file (= no policy). Tests are not run here."""
    if is_blank(text):
        return None
    value, pos = parse(text, filename)
    ld = _Loader(pos)
    top = ld.members(value, (), _TOP)
    pol = Policy(filename=filename, positions=pos)
    _load_groups(ld, pol, top.get("groups"))
    _load_hosts(ld, pol, top.get("hosts"))
    _load_tag_owners(ld, pol, top.get("tagOwners"))
    refs = _Refs(ld, pol)
    if top.get("acls") is not None or top.get("grants") is not None:
        pol.acls = _load_acls(ld, refs, top.get("acls"))
        pol.acls += _load_grants(ld, refs, top.get("grants"))
    if "ssh" in top and top["ssh"] is not None:
        pol.ssh = _load_ssh(ld, refs, top["ssh"])
    _load_approvers(ld, refs, pol, top.get("autoApprovers"))
    pol.tests = _load_tests(ld, top.get("tests"))
    pol.ssh_tests = _load_ssh_tests(ld, top.get("sshTests"))
    return pol


def _load_groups(ld: _Loader, pol: Policy, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise ld.err("groups must be an object", ("groups",))
    for name, members in value.items():
        path: Path = ("groups", name)
        if not name.startswith("group:") or len(name) == len("group:"):
            raise ld.err(f'group name "{name}" must start with "group:"', path, key=True)
        if members is None:
            members = []
        items = ld.strings(members, path, f"groups[{name!r}]")
        for i, member in enumerate(items):
            if member.startswith("group:"):
                raise ld.err(f'groups["{name}"]: "{member}": group members cannot be recursive '
                             "(nested groups are not allowed)", path + (i,))
            if "@" not in member:
                raise ld.err(f'groups["{name}"]: "{member}" is not a user (users contain "@")', path + (i,))
        pol.groups[name] = tuple(m.strip() for m in items)


def _load_hosts(ld: _Loader, pol: Policy, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise ld.err("hosts must be an object", ("hosts",))
    for name, addr in value.items():
        path: Path = ("hosts", name)
        if not name or "@" in name or ":" in name:
            raise ld.err(f'hosts name "{name}" may not be empty or contain "@" or ":"', path, key=True)
        net = parse_network(addr) if isinstance(addr, str) else None
        if net is None:
            raise ld.err(f'hosts["{name}"]: {addr!r} is not an IP address or prefix', path)
        pol.hosts[name] = net


def _load_tag_owners(ld: _Loader, pol: Policy, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise ld.err("tagOwners must be an object", ("tagOwners",))
    for tag in value:
        if not _TAG_NAME.match(tag):
            raise ld.err(f'tagOwners["{tag}"]: tag names must start with a letter, after \'tag:\'',
                         ("tagOwners", tag), key=True)
    for tag, owners in value.items():
        path: Path = ("tagOwners", tag)
        items = ld.strings(owners if owners is not None else [], path, f"tagOwners[{tag!r}]")
        for i, owner in enumerate(items):
            ok = "@" in owner or owner in pol.groups or owner in value or owner == "autogroup:admin"
            if not ok:
                raise ld.err(f'tagOwners["{tag}"]: owner "{owner}" is not a user, a defined group or a tag',
                             path + (i,))
        pol.tag_owners[tag] = tuple(items)


class _Refs:
    """Parses aliases and checks that the groups, tags and hosts they name exist."""

    def __init__(self, ld: _Loader, pol: Policy) -> None:
        self.ld = ld
        self.pol = pol

    def alias(self, text: str, path: Path, side: str) -> Alias:
        try:
            alias = parse_alias(text.strip())
        except ValueError as exc:
            raise self.ld.err(f"{side}={text!r}: {exc}", path) from None
        self.check_defined(alias, path, side)
        return alias

    def check_defined(self, alias: Alias, path: Path, side: str) -> None:
        if alias.kind is Kind.GROUP and alias.name not in self.pol.groups:
            raise self.ld.err(f'{side}=group not found: "{alias.name}"', path)
        if alias.kind is Kind.TAG and alias.name not in self.pol.tag_owners:
            raise self.ld.err(f'{side}=tag not found: "{alias.name}"', path)
        if alias.kind is Kind.HOST and alias.name not in self.pol.hosts:
            raise self.ld.err(f'{side}=host not found: "{alias.name}"', path)
        if alias.kind is Kind.USER and alias.name.startswith("user:"):
            self.check_domain(alias.name, path)

    def check_domain(self, text: str, path: Path) -> None:
        """`user:*@domain` / `localpart:*@domain`: a plain lowercase domain. Whether some user has it is
        checked against the users at load (`domains_in_use`)."""
        domain = text.rpartition("@")[2]
        if domain and (domain != domain.lower() or "*" in domain or "@" in domain):
            raise self.ld.err(f"{domain} is not associated with this Tailnet and cannot be used in "
                              "user:*@<domain> expressions", path)
        self.pol.domain_refs.append((domain, path))


def _load_acls(ld: _Loader, refs: _Refs, value: Any) -> list[AclRule]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ld.err("acls must be a list", ("acls",))
    rules = []
    for i, entry in enumerate(value):
        path: Path = ("acls", i)
        acl = ld.members(entry, path, _ACL, comments=True)
        action = acl.get("action")
        if action != "accept":
            raise ld.err(f'action="{action}" is not supported (only "accept")', path + ("action",))
        proto_text = ld.string(acl.get("proto", ""), path + ("proto",), "proto")
        try:
            protocols = parse_protocol(proto_text)
        except ValueError as exc:
            raise ld.err(str(exc), path + ("proto",)) from None
        src = tuple(refs.alias(s, path + ("src", k), "src")
                    for k, s in enumerate(ld.strings(acl.get("src", []), path + ("src",), "src")))
        dst = _destinations(ld, refs, acl.get("dst", []), path + ("dst",), protocols)
        rules.append(AclRule(src, dst, protocols, path))
        _check_self_sources(ld, rules[-1])
    return rules


def _destinations(ld: _Loader, refs: _Refs, value: Any, path: Path,
                  protocols: tuple[int, ...]) -> tuple[tuple[Alias, tuple[tuple[int, int], ...]], ...]:
    out = []
    for k, text in enumerate(ld.strings(value, path, "dst")):
        try:
            alias, ports = parse_destination(text.strip())
        except ValueError as exc:
            raise ld.err(f'dst="{text}": {exc}', path + (k,)) from None
        refs.check_defined(alias, path + (k,), f'dst="{alias.name}"')
        if alias.kind is Kind.AUTOGROUP and alias.name == "autogroup:nonroot":
            raise ld.err(f'dst="{text}": autogroup:nonroot is only valid in SSH users', path + (k,))
        if ports != [ALL_PORTS] and not set(protocols) <= PORT_PROTOCOLS:
            raise ld.err(f'dst="{text}": protocol does not support specific ports; use ":*"', path + (k,))
        out.append((alias, tuple(ports)))
    return tuple(out)


def _check_self_sources(ld: _Loader, rule: AclRule, wildcard_ok: bool = True) -> None:
    """SaaS: `autogroup:self` destinations only with user-like sources (users, groups, member, and in
    `acls` also `*`; SaaS refuses `*` with autogroup:self in grants)."""
    for k, alias in enumerate(rule.src):
        if alias.kind is Kind.AUTOGROUP and alias.name in ("autogroup:self", "autogroup:internet"):
            raise ld.err(f'"{alias.name}" not valid on the src side of a rule', rule.path + ("src", k))
    if not any(a.name == "autogroup:self" for a, _ in rule.dst):
        return
    for k, alias in enumerate(rule.src):
        userlike = (alias.kind in (Kind.USER, Kind.GROUP) or alias.name == "autogroup:member"
                    or (wildcard_ok and alias.kind is Kind.WILDCARD))
        if not userlike:
            raise ld.err("autogroup:self can only be used with users, groups, or supported autogroups",
                         rule.path + ("src", k))


def _load_grants(ld: _Loader, refs: _Refs, value: Any) -> list[AclRule]:
    """IP-only grants, translated to the equivalent accept rules ("ip": ["*"], ["22"], ["tcp:443"])."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ld.err("grants must be a list", ("grants",))
    rules = []
    for i, entry in enumerate(value):
        path: Path = ("grants", i)
        if isinstance(entry, dict) and any(k.lower() in ("app", "via") for k in entry):
            raise ld.err("grants with 'app' or 'via' are not supported; only 'ip' grants", path)
        grant = ld.members(entry, path, _GRANT)
        src = tuple(refs.alias(s, path + ("src", k), "src")
                    for k, s in enumerate(ld.strings(grant.get("src", []), path + ("src",), "src")))
        dsts = [refs.alias(d, path + ("dst", k), "dst")
                for k, d in enumerate(ld.strings(grant.get("dst", []), path + ("dst",), "dst"))]
        for k, d in enumerate(dsts):
            if d.kind is Kind.PREFIX and d.network is not None and d.network.prefixlen == 0:
                raise ld.err(f'dst "{d.name}": to allow all IP addresses, use "*" or "autogroup:internet"',
                             path + ("dst", k))
        specs = ld.strings(grant.get("ip") or [], path + ("ip",), "ip")
        if not specs:
            raise ld.err("ip and app can not both be empty", path)
        for k, spec in enumerate(specs):
            protocols, ports = _grant_ip(ld, spec, path + ("ip", k))
            rules.append(AclRule(src, tuple((d, tuple(ports)) for d in dsts), protocols, path))
            _check_self_sources(ld, rules[-1], wildcard_ok=False)
    return rules


def _grant_ip(ld: _Loader, spec: str, path: Path) -> tuple[tuple[int, ...], list[tuple[int, int]]]:
    proto, sep, ports = spec.rpartition(":")
    try:
        protocols = parse_protocol(proto if sep else "")
        return protocols, parse_ports(ports)
    except ValueError as exc:
        raise ld.err(f'ip="{spec}": {exc}', path) from None


def _load_ssh(ld: _Loader, refs: _Refs, value: Any) -> list[SshRule]:
    if not isinstance(value, list):
        raise ld.err("ssh must be a list", ("ssh",))
    return [_ssh_rule(ld, refs, entry, ("ssh", i)) for i, entry in enumerate(value)]


def _ssh_rule(ld: _Loader, refs: _Refs, entry: Any, path: Path) -> SshRule:
    rule = ld.members(entry, path, _SSH)
    action = rule.get("action")
    if not action:
        raise ld.err("action must be specified", path)
    action = ld.string(action, path + ("action",), "action").strip()
    if action not in ("accept", "check"):
        raise ld.err(f'"{action}" is not a valid action', path + ("action",))
    src = tuple(_ssh_alias(ld, refs, s, path + ("src", k), "src")
                for k, s in enumerate(ld.strings(rule.get("src") or [], path + ("src",), "src")))
    dst = tuple(_ssh_alias(ld, refs, d, path + ("dst", k), "dst")
                for k, d in enumerate(ld.strings(rule.get("dst") or [], path + ("dst",), "dst")))
    users = ld.strings(rule.get("users") or [], path + ("users",), "users")
    if not users:
        raise ld.err("users must be specified", path + ("users",))
    for k, user in enumerate(users):
        if user.strip() in ("", "*"):
            raise ld.err(f'user "{user}" is not valid', path + ("users", k))
        if user.startswith("localpart:*@"):
            refs.check_domain(user, path + ("users", k))
    env = ld.strings(rule.get("acceptEnv") or [], path + ("acceptEnv",), "acceptEnv")
    if any(not e for e in env):
        raise ld.err("acceptEnv values cannot be empty", path + ("acceptEnv",))
    period = _check_period(ld, rule.get("checkPeriod"), path + ("checkPeriod",))
    return SshRule(action, src, dst, tuple(u.strip() for u in users), period, tuple(env), path)


def _ssh_alias(ld: _Loader, refs: _Refs, text: str, path: Path, side: str) -> Alias:
    alias = refs.alias(text, path, side)
    bad = alias.kind in (Kind.PREFIX, Kind.HOST, Kind.WILDCARD) if side == "src" else alias.kind in (
        Kind.PREFIX, Kind.HOST, Kind.GROUP)
    if bad or alias.name in ("autogroup:internet", "autogroup:nonroot") or (
            side == "src" and alias.name == "autogroup:self"):
        raise ld.err(f'invalid {side} "{text}"', path)
    return alias


def _check_period(ld: _Loader, value: Any, path: Path) -> float | None:
    if value is None:
        return None
    text = ld.string(value, path, "checkPeriod")
    if text == "always":
        return 0.0
    seconds = go_duration(text)
    if seconds is None:
        raise ld.err(f'time: invalid duration "{text}"', path)
    if seconds < 0:
        raise ld.err(f"checkPeriod {text} must be a positive duration", path)
    if seconds > MAX_CHECK_PERIOD_S:
        raise ld.err(f"checkPeriod {text} is above the max (168h)", path)
    return seconds


def go_duration(text: str) -> float | None:
    """Go's time.ParseDuration subset: `1h30m`, `90s`, `-1m`, `0`; None if malformed."""
    if text in ("0", "+0", "-0"):
        return 0.0
    m = _GO_DURATION.match(text)
    if not m:
        return None
    total = sum(float(num) * _UNIT_S[unit] for num, unit in _GO_UNIT.findall(text))
    return -total if m.group(1) == "-" else total


def _load_approvers(ld: _Loader, refs: _Refs, pol: Policy, value: Any) -> None:
    if value is None:
        return
    top = ld.members(value, ("autoApprovers",), _APPROVERS)
    routes = top.get("routes") or {}
    if not isinstance(routes, dict):
        raise ld.err("autoApprovers.routes must be an object", ("autoApprovers", "routes"))
    for prefix, approvers in routes.items():
        path: Path = ("autoApprovers", "routes", prefix)
        net = parse_network(prefix) if "/" in prefix else None
        if net is None:
            raise ld.err(f'autoApprovers.routes: "{prefix}" is not a CIDR prefix', path, key=True)
        names = ld.strings(approvers or [], path, "approvers")
        pol.route_approvers[net] = tuple(_approver(ld, refs, a, path + (k,)) for k, a in enumerate(names))
    exits = ld.strings(top.get("exitNode") or [], ("autoApprovers", "exitNode"), "exitNode")
    pol.exit_approvers = tuple(_approver(ld, refs, a, ("autoApprovers", "exitNode", k))
                               for k, a in enumerate(exits))


def _approver(ld: _Loader, refs: _Refs, text: str, path: Path) -> Alias:
    alias = refs.alias(text, path, "approver")
    if alias.kind not in (Kind.USER, Kind.GROUP, Kind.TAG) and alias.name != "autogroup:tagged":
        raise ld.err(f'auto approver "{text}" must be a user, group or tag', path)
    return alias


def _load_tests(ld: _Loader, value: Any) -> list[AclTest]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ld.err("tests must be a list", ("tests",))
    out = []
    for i, entry in enumerate(value):
        path: Path = ("tests", i)
        t = ld.members(entry, path, _TEST)
        out.append(AclTest(
            src=ld.string(t.get("src", ""), path + ("src",), "src"),
            protocols=_test_proto(ld, t.get("proto", ""), path + ("proto",)),
            accept=tuple(ld.strings(t.get("accept") or [], path + ("accept",), "accept")),
            deny=tuple(ld.strings(t.get("deny") or [], path + ("deny",), "deny")),
            path=path))
    return out


def _test_proto(ld: _Loader, value: Any, path: Path) -> tuple[int, ...]:
    try:
        return parse_protocol(ld.string(value, path, "proto"))
    except ValueError as exc:
        raise ld.err(str(exc), path) from None


def _load_ssh_tests(ld: _Loader, value: Any) -> list[SshTest]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ld.err("sshTests must be a list", ("sshTests",))
    out = []
    for i, entry in enumerate(value):
        path: Path = ("sshTests", i)
        t = ld.members(entry, path, _SSHTEST)
        out.append(SshTest(
            src=ld.string(t.get("src", ""), path + ("src",), "src"),
            dst=tuple(ld.strings(t.get("dst") or [], path + ("dst",), "dst")),
            accept=tuple(ld.strings(t.get("accept") or [], path + ("accept",), "accept")),
            check=tuple(ld.strings(t.get("check") or [], path + ("check",), "check")),
            deny=tuple(ld.strings(t.get("deny") or [], path + ("deny",), "deny")),
            path=path))
    return out
