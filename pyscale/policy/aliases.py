"""The small grammars inside policy strings: aliases, `alias:ports` destinations, port ranges, protocols.

Alias kinds are decided in Headscale v0.27.1's order: an IP or CIDR, `*`, anything with `@` (a user),
`group:`, `tag:`, `autogroup:`, otherwise a `hosts` name. A destination splits at its **last** colon, so
`fd7a::1:22` works. Functions raise `ValueError` with a short reason; the model adds file/line/column.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

PORT_MAX = 65535
ALL_PORTS = (0, PORT_MAX)


class Kind(Enum):
    WILDCARD = "*"
    PREFIX = "prefix"
    USER = "user"
    GROUP = "group"
    TAG = "tag"
    AUTOGROUP = "autogroup"
    HOST = "host"


AUTOGROUPS = frozenset({"internet", "member", "tagged", "self", "nonroot"})

# IANA numbers for the protocol names Headscale v0.27.1 accepts (icmp means ICMPv4 and ICMPv6).
PROTOCOLS: dict[str, tuple[int, ...]] = {
    "icmp": (1, 58),
    "igmp": (2,),
    "ipv4": (4,),
    "ip-in-ip": (4,),
    "tcp": (6,),
    "egp": (8,),
    "igp": (9,),
    "udp": (17,),
    "gre": (47,),
    "esp": (50,),
    "ah": (51,),
    "sctp": (132,),
}
DEFAULT_PROTOCOLS = (6, 17)  # Headscale v0.27.1 emits TCP+UDP explicitly when `proto` is empty
PORT_PROTOCOLS = frozenset({6, 17, 132})  # only these may name specific ports


@dataclass(frozen=True, slots=True)
class Alias:
    kind: Kind
    name: str  # the text as written (for users/groups/tags/hosts/autogroups: the full token)
    network: Network | None = None  # for PREFIX

    def __str__(self) -> str:
        return self.name


def parse_network(text: str) -> Network | None:
    """An IP (as /32 or /128) or a CIDR (host bits masked off, as Headscale does), else None."""
    try:
        if "/" in text:
            return ipaddress.ip_network(text, strict=False)
        return ipaddress.ip_network(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse_alias(text: str) -> Alias:
    if not text:
        raise ValueError("empty alias")
    net = parse_network(text)
    if net is not None:
        return Alias(Kind.PREFIX, text, net)
    if text == "*":
        return Alias(Kind.WILDCARD, text)
    if "@" in text:
        return Alias(Kind.USER, text)
    for prefix, kind in (("group:", Kind.GROUP), ("tag:", Kind.TAG)):
        if text.startswith(prefix):
            if len(text) == len(prefix):
                raise ValueError(f"{text!r} has an empty name")
            return Alias(kind, text)
    if text.startswith("autogroup:"):
        if text[len("autogroup:") :] not in AUTOGROUPS:
            raise ValueError(f"unknown autogroup {text!r}")
        return Alias(Kind.AUTOGROUP, text)
    if ":" in text or any(ch.isspace() for ch in text):
        raise ValueError(f"{text!r} is not a valid alias")
    return Alias(Kind.HOST, text)


def parse_ports(text: str) -> list[tuple[int, int]]:
    """`*`, `22`, `80,443`, `1000-2000` or comma lists of those -> inclusive (first, last) ranges."""
    if text == "*":
        return [ALL_PORTS]
    out = []
    for part in text.split(","):
        first_s, sep, last_s = part.partition("-")
        first = _port(first_s, part)
        last = _port(last_s, part) if sep else first
        if first == 0:
            raise ValueError(f"port range {part!r}: first port must be >0, or use '*' for wildcard")
        if last < first:
            raise ValueError(f"port range {part!r}: last port is below the first")
        out.append((first, last))
    return out


def _port(text: str, part: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"port range {part!r}: {text!r} is not a port number")
    value = int(text)
    if value > PORT_MAX:
        raise ValueError(f"port range {part!r}: {value} is above {PORT_MAX}")
    return value


def parse_destination(text: str) -> tuple[Alias, list[tuple[int, int]]]:
    """`alias:ports`, split at the last colon."""
    host, sep, ports = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"destination {text!r} needs the form alias:ports")
    alias = parse_alias(host)
    return alias, parse_ports(ports)


def parse_protocol(text: str) -> tuple[int, ...]:
    """`proto` value -> IANA numbers; empty means Headscale v0.27.1's default TCP+UDP."""
    if text == "":
        return DEFAULT_PROTOCOLS
    named = PROTOCOLS.get(text.lower())
    if named is not None:
        return named
    if text.isascii() and text.isdigit() and not text.startswith("0"):
        number = int(text)
        if 1 <= number <= 255:
            return (number,)
    raise ValueError(f"unknown protocol {text!r}")
