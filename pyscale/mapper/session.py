"""One map stream: the full map first, then one delta per batch of State events, keep-alives between.

Deltas follow Headscale's mapping of changes (docs/tailscale-protocol.md §13.5): a changed peer
goes out as PeersChanged, online/offline and key expiry as PeersChangedPatch, deletions as
PeersRemoved; the viewer's own change as Node. Only global changes (policy, users, DNS)
produce a full map. Each message is u32 little-endian length + one zstd frame of JSON.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import AsyncIterator
from typing import Any

import zstandard

from pyscale.mapper.build import Mapper, served_routes
from pyscale.state.events import (
    Event,
    FiltersChanged,
    FullUpdate,
    KeyExpiryChanged,
    NodeChanged,
    NodeRemoved,
    OnlineChanged,
    Subscription,
)
from pyscale.state.model import utcnow
from pyscale.tailcfg.messages import MapResponse
from pyscale.tailcfg.timefmt import format_time

KEEPALIVE_MIN_S = 50.0  # the client's watchdog fires after 120 s of silence
KEEPALIVE_JITTER_S = 9.0
BATCH_DELAY_S = 0.05  # gather a burst of changes into one delta

_compressor = zstandard.ZstdCompressor(level=1)


def frame(message: MapResponse) -> bytes:
    payload = _compressor.compress(message.encode())
    return struct.pack("<I", len(payload)) + payload


KEEPALIVE_FRAME = frame(MapResponse(keep_alive=True))


class MapSession:
    def __init__(self, mapper: Mapper, node_id: int, cap: int, sub: Subscription,
                 batch_delay: float = BATCH_DELAY_S) -> None:
        self.mapper = mapper
        self.node_id = node_id
        self.cap = cap
        self.sub = sub
        self.batch_delay = batch_delay

    async def messages(self) -> AsyncIterator[bytes]:
        """Framed messages until the viewer node is deleted (then the stream ends)."""
        yield frame(self.mapper.full(self.node_id, self.cap))
        while True:
            try:
                event = await asyncio.wait_for(self.sub.queue.get(), self._keepalive_interval())
            except TimeoutError:
                yield KEEPALIVE_FRAME
                continue
            if self.batch_delay:
                await asyncio.sleep(self.batch_delay)
            batch = [event, *self.sub.drain_pending()]
            for e in batch:
                if isinstance(e, NodeRemoved):
                    self.mapper.forget(e.node_id)
            if any(isinstance(e, NodeRemoved) and e.node_id == self.node_id for e in batch):
                return
            resp = self.delta(batch)
            if resp is not None:
                yield frame(resp)

    def _keepalive_interval(self) -> float:
        return KEEPALIVE_MIN_S + random.random() * KEEPALIVE_JITTER_S

    def _needs_full_map(self, event: Event) -> bool:
        """Global changes, a policy answer for this viewer, or a subnet router coming or going (its
        routes may move to another router: Headscale sends a full map then too)."""
        if isinstance(event, FullUpdate):
            return True
        if isinstance(event, FiltersChanged):
            return self.node_id in event.node_ids
        if isinstance(event, OnlineChanged):
            node = self.mapper.state.nodes.get(event.node_id)
            return node is not None and bool(served_routes(node))
        return False

    def delta(self, batch: list[Event]) -> MapResponse | None:
        state = self.mapper.state
        if self.node_id not in state.nodes:
            return None
        if any(self._needs_full_map(e) for e in batch):
            return self.mapper.full(self.node_id, self.cap)
        viewer = state.nodes[self.node_id]
        can_see = self.mapper.ctx.policy.can_see
        changed: set[int] = set()
        removed: set[int] = set()
        patches: dict[int, dict[str, Any]] = {}
        for event in batch:
            if isinstance(event, NodeChanged):
                changed.add(event.node_id)
            elif isinstance(event, NodeRemoved):
                removed.add(event.node_id)
            elif isinstance(event, OnlineChanged):
                patch = patches.setdefault(event.node_id, {"NodeID": event.node_id})
                patch["Online"] = event.online
                node = state.nodes.get(event.node_id)
                if not event.online and node is not None and node.last_seen is not None:
                    patch["LastSeen"] = format_time(node.last_seen)
            elif isinstance(event, KeyExpiryChanged):
                node = state.nodes.get(event.node_id)
                if node is not None:
                    patches.setdefault(event.node_id, {"NodeID": event.node_id})["KeyExpiry"] = (
                        format_time(node.expiry))
                    changed.add(event.node_id)
        resp = MapResponse(control_time=utcnow())
        if self.node_id in changed:
            resp.node = self.mapper.wire_node(viewer, self.cap)
        peers = [state.nodes[i] for i in sorted(changed - {self.node_id})
                 if i in state.nodes and can_see(self.node_id, i)]
        if peers:
            resp.peers_changed_raw = [self.mapper.wire_node_bytes(p, self.cap) for p in peers]
            resp.user_profiles = self.mapper.user_profiles(peers)
        if removed:
            resp.peers_removed = sorted(removed)
        visible_patches = [p for i, p in sorted(patches.items())
                           if i != self.node_id and i in state.nodes and can_see(self.node_id, i)
                           and i not in changed]
        if visible_patches:
            resp.peers_changed_patch = visible_patches
        if resp.node is None and not peers and not removed and not visible_patches:
            return None
        return resp
