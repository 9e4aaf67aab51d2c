"""Pre-0.23 Headscale key names -> current keys, with exactly one warning per old key found.

Headscale v0.27.1 ignores these keys silently (``ip_prefixes``, ``db_*``, ``log_level``, ...), discards them
with a warning (``dns_config.*``) or refuses to start (``acl_policy_path``). pyscale moves each value to its
current key instead; when the current key is set too, the current key wins and the warning says so.
Keys that no longer mean anything are dropped, also with one warning.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from pyscale.config.report import LegacyMapping, Problem, Setting, Where
from pyscale.config.source import RawSource

# Old key -> current key, for values that move unchanged.
RENAMED: dict[str, str] = {
    "db_type": "database.type",
    "db_path": "database.sqlite.path",
    "db_host": "database.postgres.host",
    "db_port": "database.postgres.port",
    "db_name": "database.postgres.name",
    "db_user": "database.postgres.user",
    "db_pass": "database.postgres.pass",
    "db_ssl": "database.postgres.ssl",
    "dns_config.magic_dns": "dns.magic_dns",
    "dns_config.base_domain": "dns.base_domain",
    "dns_config.override_local_dns": "dns.override_local_dns",
    "dns_config.nameservers": "dns.nameservers.global",
    "dns_config.restricted_nameservers": "dns.nameservers.split",
    "dns_config.domains": "dns.search_domains",
    "dns_config.extra_records": "dns.extra_records",
    "acl_policy_path": "policy.path",
    "log_level": "log.level",
}

# Old keys with no current equivalent: why they are dropped.
DROPPED: dict[str, str] = {
    "node_update_check_interval": "pyscale pushes node changes to map streams instead of polling",
    "tls_client_auth_mode": "client certificate authentication was removed from Headscale",
    "oidc.domain_map": "removed from Headscale",
    "oidc.strip_email_domain": "removed in Headscale 0.26 (user names keep their email domain)",
    "oidc.map_legacy_users": "removed in Headscale 0.26",
    "dns.use_username_in_magic_dns": "removed in Headscale (node names never contain the user name)",
    "dns_config.use_username_in_magic_dns": "removed in Headscale (node names never contain the user name)",
}

# Keys from Headscale 0.28/0.29 that someone following newer docs may write. pyscale follows v0.27.1.
NEWER_RENAMED: dict[str, str] = {"node.ephemeral.inactivity_timeout": "ephemeral_node_inactivity_timeout"}
NEWER_IGNORED: dict[str, str] = {
    "node.expiry": "Headscale 0.29 key (default node key expiry); v0.27.1 has none: nodes keep the expiry "
    "their client asks for",
    "node.routes.ha.probe_interval": "Headscale 0.29 key (HA route probing); not supported",
    "node.routes.ha.probe_timeout": "Headscale 0.29 key (HA route probing); not supported",
    "trusted_proxies": "Headscale 0.29 key; pyscale does not read forwarded-for headers",
    "taildrop.enabled": "Headscale 0.28 key; as in v0.27.1, Taildrop is always allowed",
    "auto_update.enabled": "Headscale 0.29 key; not supported",
    "oidc.email_verified_required": "Headscale 0.28 key; OIDC is not supported yet",
}

# Old keys whose value is a list or map (kept whole when reading the YAML).
STRUCTURED = frozenset(
    {
        "ip_prefixes",
        "dns_config.nameservers",
        "dns_config.restricted_nameservers",
        "dns_config.domains",
        "dns_config.extra_records",
    }
)
LEGACY_KEYS = frozenset(RENAMED) | frozenset(DROPPED) | {"ip_prefixes", "ip_prefix", "private_key_path"}
MAPPED_KEYS = LEGACY_KEYS | frozenset(NEWER_RENAMED) | frozenset(NEWER_IGNORED)


def headscale_behaviour(old: str) -> str:
    """What Headscale v0.27.1 itself does with ``old`` (see headscale-facts.md 1.3)."""
    if old in NEWER_RENAMED:
        return "a Headscale 0.29 name that v0.27.1 ignores"
    if old == "acl_policy_path" or old == "dns_config.extra_records":
        return "Headscale v0.27.1 refuses to start with it"
    if old.startswith("dns_config."):
        return "Headscale v0.27.1 warns and discards its value"
    return "Headscale v0.27.1 silently ignores it"


class _Mapper:
    def __init__(self, src: RawSource) -> None:
        self.src = src
        self.settings = dict(src.settings)
        self.mappings: list[LegacyMapping] = []
        self.problems: list[Problem] = []

    def warn(self, key: str, msg: str, where: Where) -> None:
        self.problems.append(Problem("warning", key, msg, where))

    def move(self, old: str, new: str, value: object, where: Where) -> bool:
        """Put ``value`` at ``new`` unless the file already sets it. Returns True when moved."""
        current = self.settings.get(new)
        if current is not None:
            self.mappings.append(LegacyMapping(old, new, where, applied=False))
            msg = (
                f"legacy key {old!r} is not used: the current key {new!r} is also set "
                f"(at {current.where}) and wins; remove {old!r}"
            )
            self.warn(old, msg, where)
            return False
        self.settings[new] = Setting(value, where, None)
        return True

    def renamed(self, old: str, new: str) -> None:
        s = self.settings.pop(old)
        if self.move(old, new, s.value, s.where):
            self.settings[new] = s  # keep the source text too (e.g. for octal modes)
            self.mappings.append(LegacyMapping(old, new, s.where, applied=True))
            msg = f"legacy key {old!r} mapped to {new!r} ({headscale_behaviour(old)}); please rename it"
            if old in NEWER_RENAMED:
                msg = f"key {old!r} mapped to {new!r} ({headscale_behaviour(old)})"
            self.warn(old, msg, s.where)

    def dropped(self, old: str) -> None:
        s = self.settings.pop(old)
        self.mappings.append(LegacyMapping(old, None, s.where, applied=False))
        if old in NEWER_IGNORED:
            self.warn(old, f"key {old!r} ignored: {NEWER_IGNORED[old]}", s.where)
        else:
            self.warn(old, f"legacy key {old!r} ignored: {DROPPED[old]}; please remove it", s.where)

    def ip_prefixes(self, old: str) -> None:
        s = self.settings.pop(old)
        # viper reads a string as a list by splitting it on whitespace.
        raw = s.value if isinstance(s.value, list) else str(s.value or "").split()
        by_family: dict[int, list[str]] = {4: [], 6: []}
        for item in raw:
            try:
                net = ipaddress.ip_network(str(item).strip(), strict=False)
            except ValueError:
                self.problems.append(Problem("error", old, f"{old}: invalid IP prefix {item!r}", s.where))
                continue
            by_family[net.version].append(str(item).strip())
        targets = []
        for fam, key in ((4, "prefixes.v4"), (6, "prefixes.v6")):
            found = by_family[fam]
            if len(found) > 1:
                msg = f"{old}: only one IPv{fam} prefix is supported ({key}); got {', '.join(found)}"
                self.problems.append(Problem("error", old, msg, s.where))
            if found:
                targets.append((key, found[0]))
        # One mapping and one warning for the key, whichever of its targets were already set.
        taken = [k for k, _ in targets if k in self.settings]
        for key, value in targets:
            if key not in taken:
                self.settings[key] = Setting(value, s.where)
        new = " + ".join(k for k, _ in targets) or "prefixes.v4/prefixes.v6"
        applied = len(taken) < len(targets)
        self.mappings.append(LegacyMapping(old, new, s.where, applied=applied))
        msg = f"legacy key {old!r} mapped to {new} ({headscale_behaviour(old)}); please rename it"
        if taken:
            wins = ", ".join(f"{k!r} (at {self.settings[k].where})" for k in taken)
            msg = f"legacy key {old!r} is not used for {wins}: the current key is also set and wins; " + (
                f"the rest is mapped to {new}; please rename it" if applied else f"remove {old!r}"
            )
        self.warn(old, msg, s.where)

    def private_key_path(self, old: str) -> None:
        # Before the Noise protocol this was the server's machine key. It is only worth reusing when the
        # file has no noise key at all; otherwise Headscale >= 0.23 ignores it and so do we.
        if "noise.private_key_path" not in self.settings:
            self.renamed(old, "noise.private_key_path")
            return
        s = self.settings.pop(old)
        self.mappings.append(LegacyMapping(old, None, s.where, applied=False))
        msg = f"legacy key {old!r} ignored: it was the pre-Noise key; noise.private_key_path is set"
        self.warn(old, msg, s.where)


def apply_legacy(src: RawSource) -> tuple[dict[str, Setting], list[LegacyMapping], list[Problem]]:
    """Map every legacy key in ``src`` (file settings only; the environment uses current names)."""
    m = _Mapper(src)
    handlers: dict[str, Callable[[str], None]] = {"ip_prefixes": m.ip_prefixes, "ip_prefix": m.ip_prefixes}
    handlers["private_key_path"] = m.private_key_path
    renamed = {**RENAMED, **NEWER_RENAMED}
    for old in [k for k in src.settings if k in MAPPED_KEYS]:
        if old in handlers:
            handlers[old](old)
        elif old in renamed:
            m.renamed(old, renamed[old])
        else:
            m.dropped(old)
    _keep_old_dns_defaults(m)
    return m.settings, m.mappings, m.problems


def _keep_old_dns_defaults(m: _Mapper) -> None:
    """A pre-0.23 ``dns_config`` section had MagicDNS off unless enabled, and without nameservers it left the
    client's resolvers alone. The current defaults (MagicDNS on, override_local_dns on) would make such a
    file invalid, so keep the old meaning when the file says nothing about these keys."""
    where = m.src.sections.get("dns_config")
    if where is None or any(k.startswith("dns.") for k in m.src.settings):
        return
    if "dns.magic_dns" not in m.settings:
        m.settings["dns.magic_dns"] = Setting(False, where)
        m.warn("dns_config", "dns_config has no magic_dns: keeping the old default (MagicDNS off)", where)
    if "dns.override_local_dns" not in m.settings and "dns.nameservers.global" not in m.settings:
        m.settings["dns.override_local_dns"] = Setting(False, where)
        msg = "dns_config has no nameservers: keeping the old behaviour (clients keep their own DNS)"
        m.warn("dns_config", msg, where)
