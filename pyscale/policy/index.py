"""The compiler's node table: node views plus the secondary indexes alias resolution needs, kept current
under single-node updates, and node sets as bitmasks.

Each node gets a dense bit position when first seen (never reused, so a removed node's bit just stays
clear). A set of nodes is then a Python int; unions of thousands of nodes are one OR. `ids_of(mask)` turns a
mask back into node ids.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable

from .ipset import Interval
from .topology import NodeView

_BIT_TABLE = bytes.maketrans(b"01", b"\x00\x01")


class NodeIndex:
    def __init__(self, views: Iterable[NodeView]) -> None:
        self.views: dict[int, NodeView] = {}
        self.bit: dict[int, int] = {}
        self.id_at: list[int] = []
        self.all_mask = 0
        self.by_user: dict[int, set[int]] = {}  # untagged nodes per user
        self.by_tag: dict[str, set[int]] = {}
        self.untagged: set[int] = set()
        self.tagged: set[int] = set()
        self.exits: set[int] = set()
        self.routers: set[int] = set()  # nodes with approved subnet routes
        self.ip_sorted: list[tuple[int, int]] = []  # (address key, node id)
        for v in views:
            self._add(v, sort=False)
        self.ip_sorted.sort()

    def add(self, view: NodeView) -> None:
        self.remove(view.id)
        self._add(view, sort=True)

    def _add(self, v: NodeView, sort: bool) -> None:
        self.views[v.id] = v
        if v.id not in self.bit:
            self.bit[v.id] = len(self.id_at)
            self.id_at.append(v.id)
        self.all_mask |= 1 << self.bit[v.id]
        if v.tagged:
            self.tagged.add(v.id)
            for tag in v.tags:
                self.by_tag.setdefault(tag, set()).add(v.id)
        else:
            self.untagged.add(v.id)
            if v.user_id is not None:
                self.by_user.setdefault(v.user_id, set()).add(v.id)
        if v.is_exit:
            self.exits.add(v.id)
        if v.route_ivs:
            self.routers.add(v.id)
        for k in v.ip_keys:
            if sort:
                bisect.insort(self.ip_sorted, (k, v.id))
            else:
                self.ip_sorted.append((k, v.id))

    def remove(self, node_id: int) -> NodeView | None:
        v = self.views.pop(node_id, None)
        if v is None:
            return None
        self.all_mask &= ~(1 << self.bit[node_id])
        for s in (self.tagged, self.untagged, self.exits, self.routers,
                  self.by_user.get(v.user_id if v.user_id is not None else -1, set()),
                  *(self.by_tag.get(t, set()) for t in v.tags)):
            s.discard(node_id)
        for k in v.ip_keys:
            i = bisect.bisect_left(self.ip_sorted, (k, node_id))
            if i < len(self.ip_sorted) and self.ip_sorted[i] == (k, node_id):
                del self.ip_sorted[i]
        return v

    def inside(self, iv: Interval) -> set[int]:
        """Nodes with an address in the interval."""
        lo = bisect.bisect_left(self.ip_sorted, (iv[0], -1))
        hi = bisect.bisect_right(self.ip_sorted, (iv[1], 1 << 62))
        return {nid for _, nid in self.ip_sorted[lo:hi]}

    def mask(self, ids: Iterable[int]) -> int:
        m = 0
        bit = self.bit
        for i in ids:
            m |= 1 << bit[i]
        return m

    def ids_of(self, mask: int) -> set[int]:
        # bin() gives the bits as '0'/'1' text (C speed); reversed and mapped to 0/1 bytes it selects ids
        # through itertools.compress, also C speed: ~50 us for 10,000 nodes.
        flags = bin(mask)[:1:-1].encode("ascii").translate(_BIT_TABLE)
        return set(itertools.compress(self.id_at, flags))

    def has(self, mask: int, node_id: int) -> bool:
        return bool(mask >> self.bit[node_id] & 1)
