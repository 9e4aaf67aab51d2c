"""IP interval sets: CIDR rendering equals ipaddress.summarize_address_range; merge/subtract are exact."""

from __future__ import annotations

import ipaddress
import random

from pyscale.policy.ipset import V6_BASE, merge, parse_range, subtract, to_cidrs


def test_to_cidrs_matches_the_standard_library() -> None:
    rnd = random.Random(3)
    for _ in range(500):
        v6 = rnd.random() < 0.5
        bits = 128 if v6 else 32
        lo = rnd.randrange(1 << bits)
        hi = min((1 << bits) - 1, lo + rnd.choice([0, 1, 7, 255, 1 << rnd.randrange(bits)]))
        cls = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
        want = [str(n) for n in ipaddress.summarize_address_range(cls(lo), cls(hi))]
        base = V6_BASE if v6 else 0
        assert to_cidrs([(base + lo, base + hi)]) == want


def test_merge_and_subtract_on_small_universe() -> None:
    rnd = random.Random(4)
    for _ in range(300):
        a = [(x, x + rnd.randrange(5)) for x in rnd.sample(range(60), 6)]
        b = [(x, x + rnd.randrange(5)) for x in rnd.sample(range(60), 6)]
        set_a = {v for lo, hi in a for v in range(lo, hi + 1)}
        set_b = {v for lo, hi in b for v in range(lo, hi + 1)}
        ma, mb = merge(a), merge(b)
        assert {v for lo, hi in ma for v in range(lo, hi + 1)} == set_a
        assert all(ma[i][1] + 1 < ma[i + 1][0] for i in range(len(ma) - 1))
        assert {v for lo, hi in subtract(ma, mb) for v in range(lo, hi + 1)} == set_a - set_b


def test_parse_range_forms() -> None:
    assert parse_range("100.64.0.1") == [(int(ipaddress.IPv4Address("100.64.0.1")),) * 2]
    assert to_cidrs(parse_range("100.64.0.0-100.64.0.255")) == ["100.64.0.0/24"]
    assert to_cidrs(parse_range("*")) == ["0.0.0.0/0", "::/0"]
    assert to_cidrs(parse_range("fd7a:115c:a1e0::/48")) == ["fd7a:115c:a1e0::/48"]
