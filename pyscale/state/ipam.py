"""Tailnet address allocation, as Headscale v0.27.1 does it (hscontrol/db/ip.go).

Each node gets one address per configured prefix. ``sequential`` walks forward from the last
address handed out (from the network address at start) and never wraps; ``random`` draws from
the prefix with the OS CSPRNG. The network and last address of each prefix, 100.100.100.100,
fd7a:115c:a1e0::53 and ChromeOS's 100.115.92.0/23 are never handed out, nor is any address
already used. Allocation is synchronous (one event loop owns it), so two concurrent
registrations can never receive the same address.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

RESERVED = {ipaddress.ip_address("100.100.100.100"), ipaddress.ip_address("fd7a:115c:a1e0::53")}
CHROMEOS_VM_RANGE = ipaddress.ip_network("100.115.92.0/23")
_RANDOM_ATTEMPTS = 10_000


class AllocationError(Exception):
    pass


class _PrefixAllocator:
    def __init__(self, prefix: IPNetwork, strategy: str) -> None:
        self.prefix = prefix
        self.strategy = strategy
        self.used: set[IPAddress] = set()
        self._last: IPAddress = prefix.network_address

    def _usable(self, addr: IPAddress) -> bool:
        return (
            addr in self.prefix
            and addr != self.prefix.network_address
            and addr != self.prefix.broadcast_address
            and addr not in RESERVED
            and addr not in CHROMEOS_VM_RANGE
            and addr not in self.used
        )

    def allocate(self) -> IPAddress:
        addr = self._random() if self.strategy == "random" else self._sequential()
        self.used.add(addr)
        return addr

    def _sequential(self) -> IPAddress:
        addr = int(self._last)
        last = int(self.prefix.broadcast_address)
        while addr < last:
            addr += 1
            candidate = ipaddress.ip_address(addr)
            if self._usable(candidate):
                self._last = candidate
                return candidate
        raise AllocationError(f"no free address left in {self.prefix}")

    def _random(self) -> IPAddress:
        base = int(self.prefix.network_address)
        for _ in range(_RANDOM_ATTEMPTS):
            offset = secrets.randbelow(self.prefix.num_addresses)
            addr = ipaddress.ip_address(base + offset)
            if self._usable(addr):
                return addr
        raise AllocationError(f"no free address found in {self.prefix} after {_RANDOM_ATTEMPTS} tries")


class IPAllocator:
    def __init__(self, v4: ipaddress.IPv4Network | None, v6: ipaddress.IPv6Network | None,
                 strategy: str = "sequential") -> None:
        if strategy not in ("sequential", "random"):
            raise ValueError(f"unknown allocation strategy {strategy!r}")
        self._v4 = _PrefixAllocator(v4, strategy) if v4 else None
        self._v6 = _PrefixAllocator(v6, strategy) if v6 else None

    @property
    def has_v4(self) -> bool:
        return self._v4 is not None

    @property
    def has_v6(self) -> bool:
        return self._v6 is not None

    def mark_used(self, addrs: Iterable[IPAddress | None]) -> None:
        for addr in addrs:
            if addr is None:
                continue
            pool = self._v4 if addr.version == 4 else self._v6
            if pool is not None:
                pool.used.add(addr)

    def release(self, addrs: Iterable[IPAddress | None]) -> None:
        """Forget addresses (node deleted or insert failed); sequential mode reuses them only after restart."""
        for addr in addrs:
            for pool in (self._v4, self._v6):
                if pool is not None and addr is not None:
                    pool.used.discard(addr)

    def allocate(self) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
        v4 = self._v4.allocate() if self._v4 else None
        try:
            v6 = self._v6.allocate() if self._v6 else None
        except AllocationError:
            self.release([v4])
            raise
        assert v4 is None or isinstance(v4, ipaddress.IPv4Address)
        assert v6 is None or isinstance(v6, ipaddress.IPv6Address)
        return v4, v6
