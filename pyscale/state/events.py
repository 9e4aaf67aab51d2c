"""Typed change events State publishes; map sessions turn them into delta MapResponses.

Each subscriber owns a bounded queue. A subscriber that falls too far behind is not allowed to
slow State down: its queue is replaced by a single FullUpdate, which is always correct.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

SUBSCRIBER_QUEUE_MAX = 1024


@dataclass(frozen=True, slots=True)
class NodeChanged:
    """A node was added or any of its fields changed: peers get PeersChanged, the node itself its Node."""

    node_id: int


@dataclass(frozen=True, slots=True)
class NodeRemoved:
    node_id: int


@dataclass(frozen=True, slots=True)
class OnlineChanged:
    node_id: int
    online: bool


@dataclass(frozen=True, slots=True)
class KeyExpiryChanged:
    node_id: int


@dataclass(frozen=True, slots=True)
class FullUpdate:
    """Something every map depends on changed (policy, users, DNS, DERP map)."""

    reason: str


Event = NodeChanged | NodeRemoved | OnlineChanged | KeyExpiryChanged | FullUpdate


class Subscription:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def push(self, event: Event) -> None:
        if self.queue.qsize() >= SUBSCRIBER_QUEUE_MAX:
            self._drain()
            event = FullUpdate("subscriber queue overflow")
        self.queue.put_nowait(event)

    def _drain(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()

    def drain_pending(self) -> list[Event]:
        out: list[Event] = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out

    def close(self) -> None:
        self._bus.unsubscribe(self)


class EventBus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def publish(self, event: Event) -> None:
        for sub in list(self._subs):
            sub.push(event)

    def __len__(self) -> int:
        return len(self._subs)
