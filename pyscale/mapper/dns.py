"""tailcfg.DNSConfig from the ``dns`` config section, as Headscale v0.27.1 builds it.

MagicDNS (``Proxied``) answers for ``<node>.<base_domain>`` and the reverse zones of the
tailnet prefixes; global nameservers override the OS resolvers only with override_local_dns.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def reverse_zones(prefix: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    """The in-addr.arpa / ip6.arpa zones covering a prefix, at octet (v4) / nibble (v6) granularity."""
    step = 8 if prefix.version == 4 else 4
    bits = -(-prefix.prefixlen // step) * step
    subnets = prefix.subnets(new_prefix=bits) if bits > prefix.prefixlen else iter([prefix])
    zones = []
    for sub in subnets:
        if prefix.version == 4:
            labels = str(sub.network_address).split(".")[: bits // 8]
            zones.append(".".join(reversed(labels)) + ".in-addr.arpa")
        else:
            nibbles = sub.network_address.exploded.replace(":", "")[: bits // 4]
            zones.append(".".join(reversed(nibbles)) + ".ip6.arpa")
    return zones


def build_dns_config(*, magic_dns: bool, base_domain: str, override_local_dns: bool,
                     global_servers: Sequence[str], split: Mapping[str, Sequence[str]],
                     search_domains: Sequence[str], extra_records: Iterable[Mapping[str, str]],
                     prefixes: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    resolvers = [{"Addr": s} for s in global_servers]
    if resolvers:
        cfg["Resolvers" if override_local_dns else "FallbackResolvers"] = resolvers
    routes: dict[str, Any] = {domain: [{"Addr": s} for s in servers] for domain, servers in split.items()}
    if magic_dns:
        for prefix in prefixes:
            for zone in reverse_zones(prefix):
                routes[zone] = []  # no resolvers: answered by MagicDNS (Headscale sends [], not null)
    if routes:
        cfg["Routes"] = routes
    domains = ([base_domain] if base_domain else []) + list(search_domains)
    if domains:
        cfg["Domains"] = domains
    cfg["Proxied"] = magic_dns
    records = [{"Name": r.get("name", ""), "Type": r.get("type", ""), "Value": r.get("value", "")}
               for r in extra_records]
    if records:
        cfg["ExtraRecords"] = records
    return cfg
