"""IP sets as merged integer intervals, rendered as minimal CIDR lists (what Headscale's netipx IPSet does).

IPv4 and IPv6 live in one integer line: an IPv4 address is its 32-bit value, an IPv6 address is its 128-bit
value plus 2**128, so ranges of the two families never touch and one sorted list serves both.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from .aliases import Network

V6_BASE = 1 << 128
Interval = tuple[int, int]  # inclusive


def addr_key(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    return int(addr) if addr.version == 4 else int(addr) + V6_BASE


def net_interval(net: Network) -> Interval:
    base = 0 if net.version == 4 else V6_BASE
    return base + int(net.network_address), base + int(net.broadcast_address)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def overlaps(a: Interval, b: Interval) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def contains(outer: Interval, inner: Interval) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]


def intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """Intersection of two merged, sorted interval lists."""
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """a minus b, both merged and sorted."""
    out = []
    j = 0
    for lo, hi in a:
        while j < len(b) and b[j][1] < lo:
            j += 1
        k = j
        while k < len(b) and b[k][0] <= hi:
            if b[k][0] > lo:
                out.append((lo, b[k][0] - 1))
            lo = max(lo, b[k][1] + 1)
            k += 1
        if lo <= hi:
            out.append((lo, hi))
    return out


def to_cidrs(intervals: Iterable[Interval]) -> list[str]:
    """Minimal CIDR strings for merged intervals; always with a mask (`100.64.0.1/32`), as v0.27.1 sends."""
    out: list[str] = []
    for lo, hi in intervals:
        if lo >= V6_BASE:
            out.extend(_split(lo - V6_BASE, hi - V6_BASE, 128))
        else:
            out.extend(_split(lo, hi, 32))
    return out


@functools.lru_cache(maxsize=1 << 16)
def _v6_text(value: int) -> str:
    """ipaddress's IPv6 formatting is slow; node addresses recur in many rules, so remember them."""
    return str(ipaddress.IPv6Address(value))


def _split(lo: int, hi: int, bits: int) -> list[str]:
    out = []
    while lo <= hi:
        size = (lo & -lo).bit_length() - 1 if lo else bits
        while size > 0 and lo + (1 << size) - 1 > hi:
            size -= 1
        text = f"{lo >> 24}.{lo >> 16 & 255}.{lo >> 8 & 255}.{lo & 255}" if bits == 32 else _v6_text(lo)
        out.append(f"{text}/{bits - size}")
        lo += 1 << size
    return out


def parse_range(text: str) -> list[Interval]:
    """Interval of a filter address: `*`, an IP, a CIDR or an inclusive `a-b` range (as SaaS sends)."""
    if text == "*":
        return [(0, (1 << 32) - 1), (V6_BASE, V6_BASE + (1 << 128) - 1)]
    if "-" in text and "/" not in text:
        a, _, b = text.partition("-")
        return [(addr_key(ipaddress.ip_address(a)), addr_key(ipaddress.ip_address(b)))]
    net = ipaddress.ip_network(text, strict=False) if "/" in text else ipaddress.ip_network(
        ipaddress.ip_address(text))
    return [net_interval(net)]
