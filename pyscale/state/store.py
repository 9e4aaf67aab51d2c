"""State: the one owner of users, pre-auth keys, API keys and nodes.

Everything lives in memory (dicts keyed by id plus key indexes) and every change goes through a
method here, which first commits it to the database (so an acknowledged change survives kill -9)
and then publishes a typed event. Readers (mapper, API) read the dicts and must not mutate them.
Online state is in memory only, like Headscale.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from pyscale.errors import Conflict, Invalid, NotFound
from pyscale.keys import MachinePublic, NodePublic
from pyscale.state.events import (
    EventBus,
    FullUpdate,
    KeyExpiryChanged,
    NodeChanged,
    NodeRemoved,
    OnlineChanged,
)
from pyscale.state.ipam import IPAllocator
from pyscale.state.model import ApiKey, Node, PreAuthKey, User, utcnow
from pyscale.state.names import unique_given_name, validate_given_name

log = logging.getLogger("pyscale.state")

OFFLINE_GRACE_S = 10.0  # Headscale waits 10 s for a reconnect before telling peers a node went offline


class Storage(Protocol):
    async def load_users(self) -> list[User]: ...
    async def load_nodes(self) -> list[Node]: ...
    async def load_preauthkeys(self) -> list[PreAuthKey]: ...
    async def load_apikeys(self) -> list[ApiKey]: ...
    async def insert_user(self, user: User) -> int: ...
    async def update_user(self, user: User) -> None: ...
    async def delete_user(self, user_id: int) -> None: ...
    async def insert_node(self, node: Node) -> int: ...
    async def update_node(self, node: Node) -> None: ...
    async def delete_node(self, node_id: int) -> None: ...
    async def insert_preauthkey(self, key: PreAuthKey) -> int: ...
    async def update_preauthkey(self, key: PreAuthKey) -> None: ...
    async def delete_preauthkey(self, key_id: int) -> None: ...
    async def insert_apikey(self, key: ApiKey) -> int: ...
    async def update_apikey(self, key: ApiKey) -> None: ...
    async def delete_apikey(self, key_id: int) -> None: ...
    async def load_policy(self) -> str | None: ...
    async def ping(self) -> bool: ...
    async def insert_policy(self, text: str) -> int: ...


class State:
    def __init__(self, db: Storage, ipam: IPAllocator, ephemeral_timeout: float = 120.0,
                 offline_grace: float = OFFLINE_GRACE_S) -> None:
        self.db = db
        self.ephemeral_timeout = ephemeral_timeout
        self.offline_grace = offline_grace
        self._lingering: dict[int, asyncio.TimerHandle] = {}  # disconnected, inside the grace period
        self._pending: set[asyncio.Task[None]] = set()
        self._ephemeral_timers: dict[int, asyncio.TimerHandle] = {}
        self.ipam = ipam
        self.bus = EventBus()
        self.users: dict[int, User] = {}
        self.nodes: dict[int, Node] = {}
        self.preauthkeys: dict[int, PreAuthKey] = {}
        self.apikeys: dict[int, ApiKey] = {}
        self.sessions: dict[int, int] = {}  # node id -> open map streams
        self._by_node_key: dict[NodePublic, int] = {}
        self._write_lock = asyncio.Lock()  # one writer: serialises multi-step changes
        self.node_versions: dict[int, int] = {}  # bumped on every change, keys the mapper's cache
        self._policy_updated_at: datetime | None = None  # when this process last stored a policy

    @classmethod
    async def load(cls, db: Storage, ipam: IPAllocator, ephemeral_timeout: float = 120.0) -> State:
        state = cls(db, ipam, ephemeral_timeout)
        state.users = {u.id: u for u in await db.load_users()}
        state.preauthkeys = {k.id: k for k in await db.load_preauthkeys()}
        state.apikeys = {k.id: k for k in await db.load_apikeys()}
        for node in await db.load_nodes():
            state._index(node)
        ipam.mark_used(a for n in state.nodes.values() for a in (n.ipv4, n.ipv6))
        for node in state.nodes.values():  # nobody is connected at start: every ephemeral node is on notice
            if state.is_ephemeral(node):
                state._schedule_ephemeral_gc(node.id)
        return state

    # ---- indexes -------------------------------------------------------------------------

    def _index(self, node: Node) -> None:
        old = self.nodes.get(node.id)
        if old is not None and self._by_node_key.get(old.node_key) == node.id:
            del self._by_node_key[old.node_key]
        self.nodes[node.id] = node
        self._by_node_key[node.node_key] = node.id
        self.node_versions[node.id] = self.node_versions.get(node.id, 0) + 1

    def node_by_node_key(self, key: NodePublic) -> Node | None:
        node_id = self._by_node_key.get(key)
        return self.nodes.get(node_id) if node_id is not None else None

    def node_by_machine_key(self, key: MachinePublic, user_id: int | None) -> Node | None:
        for node in self.nodes.values():
            if node.machine_key == key and (user_id is None or node.user_id == user_id):
                return node
        return None

    def user(self, user_id: int) -> User:
        try:
            return self.users[user_id]
        except KeyError:
            raise NotFound(f"user {user_id} not found") from None

    def user_by_name(self, name: str) -> User:
        for user in self.users.values():
            if user.name == name:
                return user
        raise NotFound(f"user not found: {name}")

    def node(self, node_id: int) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise NotFound(f"node {node_id} not found") from None

    def is_online(self, node_id: int) -> bool:
        return self.sessions.get(node_id, 0) > 0 or node_id in self._lingering

    def is_ephemeral(self, node: Node) -> bool:
        return node.is_ephemeral(self.preauthkeys)

    # ---- users ---------------------------------------------------------------------------

    async def create_user(self, name: str, display_name: str = "", email: str = "",
                          picture_url: str = "") -> User:
        if not name:
            raise Invalid("user name must not be empty")
        async with self._write_lock:
            if any(u.name == name and u.provider_identifier is None for u in self.users.values()):
                raise Conflict(f"user {name!r} already exists")
            user = User(0, name, display_name, email, profile_pic_url=picture_url)
            user.id = await self.db.insert_user(user)
            self.users[user.id] = user
        self.bus.publish(FullUpdate("user created"))
        return user

    async def rename_user(self, user_id: int, new_name: str) -> User:
        async with self._write_lock:
            user = self.user(user_id)
            if any(u.name == new_name and u.id != user_id for u in self.users.values()):
                raise Conflict(f"user {new_name!r} already exists")
            renamed = replace(user, name=new_name, updated_at=utcnow())
            await self.db.update_user(renamed)
            self.users[user_id] = renamed
        self.bus.publish(FullUpdate("user renamed"))
        return renamed

    async def delete_user(self, user_id: int) -> None:
        async with self._write_lock:
            self.user(user_id)
            if any(n.user_id == user_id for n in self.nodes.values()):
                raise Conflict("user not empty: node(s) found")
            for key in [k for k in self.preauthkeys.values() if k.user_id == user_id]:
                await self.db.delete_preauthkey(key.id)
                del self.preauthkeys[key.id]
            await self.db.delete_user(user_id)
            del self.users[user_id]
        self.bus.publish(FullUpdate("user deleted"))

    # ---- pre-auth keys -------------------------------------------------------------------

    async def create_preauthkey(self, user_id: int, *, reusable: bool, ephemeral: bool,
                                expiration: datetime | None, tags: list[str]) -> PreAuthKey:
        bad = [t for t in tags if not t.startswith("tag:")]
        if bad:
            raise Invalid(f"invalid tag(s) {bad}: tags must start with 'tag:'")
        async with self._write_lock:
            self.user(user_id)
            key = PreAuthKey(0, secrets.token_hex(24), user_id, reusable, ephemeral, False,
                             sorted(set(tags)), expiration)
            key.id = await self.db.insert_preauthkey(key)
            self.preauthkeys[key.id] = key
        return key

    def preauthkey_by_secret(self, secret: str) -> PreAuthKey | None:
        for key in self.preauthkeys.values():
            if secrets.compare_digest(key.key, secret):
                return key
        return None

    async def expire_preauthkey(self, user_id: int, secret: str) -> None:
        key = self.preauthkey_by_secret(secret)
        if key is None or key.user_id != user_id:
            raise NotFound("AuthKey not found")
        await self.save_preauthkey(replace(key, expiration=utcnow()))

    async def save_preauthkey(self, key: PreAuthKey) -> None:
        await self.db.update_preauthkey(key)
        self.preauthkeys[key.id] = key

    # ---- API keys ------------------------------------------------------------------------

    async def add_apikey(self, key: ApiKey) -> ApiKey:
        key.id = await self.db.insert_apikey(key)
        self.apikeys[key.id] = key
        return key

    async def save_apikey(self, key: ApiKey) -> None:
        await self.db.update_apikey(key)
        self.apikeys[key.id] = key

    async def delete_apikey(self, key_id: int) -> None:
        await self.db.delete_apikey(key_id)
        self.apikeys.pop(key_id, None)

    # ---- nodes ---------------------------------------------------------------------------

    def taken_given_names(self, except_id: int | None = None) -> set[str]:
        return {n.given_name for n in self.nodes.values() if n.id != except_id}

    async def add_node(self, build: Callable[[], Node]) -> Node:
        """Create a node: addresses and a unique name are assigned here, under the write lock."""
        async with self._write_lock:
            node = build()
            node.given_name = unique_given_name(node.given_name or node.hostname, self.taken_given_names())
            node.ipv4, node.ipv6 = self.ipam.allocate()
            try:
                node.id = await self.db.insert_node(node)
            except BaseException:
                self.ipam.release([node.ipv4, node.ipv6])
                raise
            self._index(node)
        log.info("node registered id=%d name=%s ipv4=%s", node.id, node.given_name, node.ipv4)
        self.bus.publish(NodeChanged(node.id))
        return node

    async def update_node(self, node: Node, *, event: bool = True, persist: bool = True) -> Node:
        """Replace a node record (callers pass a modified copy, never the stored instance)."""
        node.updated_at = utcnow()
        if persist:
            await self.db.update_node(node)
        self._index(node)
        if event:
            self.bus.publish(NodeChanged(node.id))
        return node

    async def modify_node(self, node_id: int, *, event: bool = True, **changes: Any) -> Node:
        """Change fields of the node as it is now, under the write lock, so concurrent changes to
        other fields (a map request's endpoints, an admin's rename) never overwrite each other."""
        async with self._write_lock:
            return await self.update_node(replace(self.node(node_id), **changes), event=event)

    async def rename_node(self, node_id: int, new_name: str) -> Node:
        problem = validate_given_name(new_name)
        if problem:
            raise Invalid(f"invalid name {new_name!r}: {problem}")
        if new_name in self.taken_given_names(except_id=node_id):
            raise Conflict(f"name {new_name!r} is already in use")
        return await self.modify_node(node_id, given_name=new_name)

    async def expire_node(self, node_id: int, when: datetime | None = None) -> Node:
        node = await self.modify_node(node_id, expiry=when or utcnow())
        self.bus.publish(KeyExpiryChanged(node_id))
        return node

    async def delete_node(self, node_id: int) -> None:
        async with self._write_lock:
            node = self.node(node_id)
            await self.db.delete_node(node_id)
            del self.nodes[node_id]
            if self._by_node_key.get(node.node_key) == node_id:
                del self._by_node_key[node.node_key]
            self.ipam.release([node.ipv4, node.ipv6])
        log.info("node deleted id=%d name=%s", node_id, node.given_name)
        self.bus.publish(NodeRemoved(node_id))

    # ---- online tracking -----------------------------------------------------------------

    def _schedule_ephemeral_gc(self, node_id: int) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._ephemeral_timers.pop(node_id, None)
            if node_id in self.nodes and not self.is_online(node_id):
                log.info("deleting ephemeral node id=%d after %.0fs offline", node_id, self.ephemeral_timeout)
                loop.create_task(self.delete_node(node_id))

        self._cancel_ephemeral_gc(node_id)
        self._ephemeral_timers[node_id] = loop.call_later(self.ephemeral_timeout, fire)

    def _cancel_ephemeral_gc(self, node_id: int) -> None:
        timer = self._ephemeral_timers.pop(node_id, None)
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        for timer in [*self._ephemeral_timers.values(), *self._lingering.values()]:
            timer.cancel()
        self._ephemeral_timers.clear()
        self._lingering.clear()

    def connect(self, node_id: int) -> None:
        self._cancel_ephemeral_gc(node_id)
        self.sessions[node_id] = self.sessions.get(node_id, 0) + 1
        lingering = self._lingering.pop(node_id, None)
        if lingering is not None:
            lingering.cancel()  # back within the grace period: peers never saw it go
        elif self.sessions[node_id] == 1:
            self.bus.publish(OnlineChanged(node_id, True))

    async def disconnect(self, node_id: int) -> None:
        """A map stream ended. The node counts as online for ``offline_grace`` seconds more, so a
        client that reconnects at once (new key, new Noise connection) causes no offline/online flap."""
        count = self.sessions.get(node_id, 0) - 1
        if count > 0:
            self.sessions[node_id] = count
            return
        self.sessions.pop(node_id, None)
        if self.offline_grace <= 0:
            await self._went_offline(node_id)
            return
        self._lingering[node_id] = asyncio.get_running_loop().call_later(
            self.offline_grace, self._spawn_offline, node_id)

    def _spawn_offline(self, node_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self._went_offline(node_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _went_offline(self, node_id: int) -> None:
        self._lingering.pop(node_id, None)
        if self.sessions.get(node_id, 0) > 0:
            return
        node = self.nodes.get(node_id)
        if node is None:
            return
        await self.modify_node(node_id, last_seen=utcnow(), event=False)
        self.bus.publish(OnlineChanged(node_id, False))
        if self.is_ephemeral(node):
            self._schedule_ephemeral_gc(node_id)


    # ---- admin operations (REST v1 / CLI: move, tags, routes, backfill, policy) -----------

    async def move_node(self, node_id: int, user_id: int) -> Node:
        """``nodes move``: the node keeps its id, keys and addresses; only the owner changes."""
        self.user(user_id)
        node = await self.modify_node(node_id, user_id=user_id)
        self.bus.publish(FullUpdate("node moved to another user"))  # user profiles and policy may change
        return node

    async def set_node_tags(self, node_id: int, tags: list[str]) -> Node:
        """``nodes tag``: replace the forced tags (Headscale stores them as given, in order)."""
        # The NodeChanged this publishes reaches peers as PeersChanged, and the policy hook sends new
        # filters and peer sets to exactly the nodes the tags affect: no full map for everyone.
        return await self.modify_node(node_id, forced_tags=list(tags))

    async def set_approved_routes(self, node_id: int, routes: list[str]) -> Node:
        """``nodes approve-routes``: routes already normalised (sorted, exit routes paired)."""
        node = await self.modify_node(node_id, approved_routes=list(routes))
        self.bus.publish(FullUpdate("approved routes changed"))  # primaries and every peer's routes
        return node

    async def backfill_node_ips(self) -> list[str]:
        """Match every node's addresses to the configured prefixes: assign a missing family, drop an
        address whose family is no longer configured. One message per change, Headscale's wording."""
        has_v4, has_v6 = self.ipam.has_v4, self.ipam.has_v6  # families configured now
        changes: list[str] = []
        async with self._write_lock:
            for node_id in sorted(self.nodes):
                node = self.nodes[node_id]
                v4, v6 = node.ipv4, node.ipv6
                if (v4 is None and has_v4) or (v6 is None and has_v6):
                    new4, new6 = self.ipam.allocate()
                    self.ipam.release([a for a, keep in ((new4, v4 is None), (new6, v6 is None)) if not keep])
                    if v4 is None and new4 is not None:
                        changes.append(f'assigned IPv4 "{new4}" to Node({node_id}) "{node.hostname}"')
                        v4 = new4
                    if v6 is None and new6 is not None:
                        changes.append(f'assigned IPv6 "{new6}" to Node({node_id}) "{node.hostname}"')
                        v6 = new6
                if v4 is not None and not has_v4:
                    changes.append(f'removing IPv4 "{v4}" from Node({node_id}) "{node.hostname}"')
                    v4 = None
                if v6 is not None and not has_v6:
                    changes.append(f'removing IPv6 "{v6}" from Node({node_id}) "{node.hostname}"')
                    v6 = None
                if (v4, v6) != (node.ipv4, node.ipv6):
                    await self.update_node(replace(node, ipv4=v4, ipv6=v6))
        return changes

    async def ping_database(self) -> bool:
        return await self.db.ping()

    async def policy_text(self) -> tuple[str | None, datetime | None]:
        """The policy stored in the database (policy.mode: database) and when pyscale last set it."""
        return await self.db.load_policy(), self._policy_updated_at

    async def set_policy_text(self, text: str) -> datetime:
        """Store a new policy version (Headscale keeps every version; the newest row is current)."""
        async with self._write_lock:
            await self.db.insert_policy(text)
            self._policy_updated_at = utcnow()
        self.bus.publish(FullUpdate("policy changed"))
        return self._policy_updated_at
