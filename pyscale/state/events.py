"""Typed change events State publishes; map sessions turn them into delta MapResponses.

Each subscriber owns a bounded queue. A subscriber that falls too far behind is not allowed to
slow State down: its queue is replaced by a single FullUpdate, which is always correct.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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


@dataclass(frozen=True, slots=True)
class FiltersChanged:
    """The policy's answer for these viewers changed (filter, visible peers or SSH): they get a full map."""

    node_ids: frozenset[int]


Event = NodeChanged | NodeRemoved | OnlineChanged | KeyExpiryChanged | FullUpdate | FiltersChanged
Hook = Callable[[Event], None]


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
    """Publishes to hooks first (synchronously: derived state such as the compiled policy is
    updated before any map session sees the event), then to every subscriber's queue."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._hooks: list[Hook] = []

    def add_hook(self, hook: Hook) -> None:
        self._hooks.append(hook)

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def publish(self, event: Event) -> None:
        for hook in self._hooks:
            hook(event)
        for sub in list(self._subs):
            sub.push(event)

    def __len__(self) -> int:
        return len(self._subs)
