"""Node registration (``/machine/register``) as Headscale v0.27.1 decides it.

Flows (docs/tailscale-protocol.md §5.4, headscale-facts §7.2): logout (expiry in the past),
re-login of a known node key (restart), node-key rotation via OldNodeKey, pre-auth keys
(reusable, single-use, ephemeral, expiry, tags), and the interactive flow: an unknown node gets
``<server_url>/register/<24-char id>``, long-polls with ``Followup`` and is answered once an
admin runs ``pyscale nodes register --user NAME --key <id>``. Failures the user must see are
returned in ``RegisterResponse.Error`` with HTTP 200, so the client reports them at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import datetime

from pyscale.errors import NotFound
from pyscale.keys import MachinePublic
from pyscale.state.model import ZERO_TIME, Node, PreAuthKey, is_zero_time, utcnow
from pyscale.state.names import sanitize_hostname
from pyscale.state.store import State
from pyscale.tailcfg.messages import RegisterRequest, RegisterResponse, UserProfile

log = logging.getLogger("pyscale.register")

REGISTRATION_ID_LEN = 24


class RegistrationExpired(Exception):
    pass


@dataclass
class PendingRegistration:
    id: str
    machine_key: MachinePublic
    request: RegisterRequest
    created: float = field(default_factory=time.monotonic)
    future: asyncio.Future[Node] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def new_registration_id() -> str:
    return secrets.token_urlsafe(18)  # 24 URL-safe characters, like Headscale


class Registrar:
    def __init__(self, state: State, server_url: str, cache_ttl: float = 900.0) -> None:
        self.state = state
        self.server_url = server_url.rstrip("/")
        self.cache_ttl = cache_ttl
        self.pending: dict[str, PendingRegistration] = {}

    # ---- entry point ---------------------------------------------------------------------

    async def register(self, req: RegisterRequest, machine_key: MachinePublic) -> RegisterResponse:
        now = utcnow()
        node = self.state.node_by_node_key(req.node_key)
        if node is not None and node.machine_key != machine_key:
            return RegisterResponse(error="node exist with different machine key")
        if req.expiry is not None and req.expiry <= now:
            return await self._logout(node, req.expiry)
        if node is None:
            node = await self._rotate_key(req, machine_key, now)
        if req.auth_key:
            return await self._with_auth_key(req, machine_key, node, now)
        if node is not None and not node.is_expired(now):
            return self.success(node)
        return await self._interactive(req, machine_key)

    def success(self, node: Node) -> RegisterResponse:
        user = self.state.users.get(node.user_id or -1)
        expired = node.is_expired(utcnow())
        profile = UserProfile(user.id, user.name, user.display_name or user.name) if user else None
        return RegisterResponse(user=profile, created=user.created_at if user else None,
                                node_key_expired=expired, machine_authorized=not expired)

    # ---- flows ---------------------------------------------------------------------------

    async def _logout(self, node: Node | None, expiry: datetime) -> RegisterResponse:
        if node is None:
            return RegisterResponse(node_key_expired=True)
        if self.state.is_ephemeral(node):
            await self.state.delete_node(node.id)
            return RegisterResponse(node_key_expired=True, machine_authorized=False)
        node = await self.state.expire_node(node.id, expiry)
        log.info("node logged out id=%d", node.id)
        return self.success(node)

    async def _rotate_key(self, req: RegisterRequest, mkey: MachinePublic, now: datetime) -> Node | None:
        if req.old_node_key.is_zero():
            return None
        old = self.state.node_by_node_key(req.old_node_key)
        if old is None or old.machine_key != mkey or old.is_expired(now):
            return None
        log.info("node key rotated id=%d", old.id)
        return await self.state.modify_node(old.id, node_key=req.node_key)

    async def _with_auth_key(self, req: RegisterRequest, mkey: MachinePublic, node: Node | None,
                             now: datetime) -> RegisterResponse:
        assert req.auth_key is not None
        key = self.state.preauthkey_by_secret(req.auth_key)
        if key is None:
            return RegisterResponse(error="handling register with auth key: AuthKey not found")
        if node is not None and node.auth_key_id == key.id and node.user_id == key.user_id:
            return self.success(node)  # same machine, node key and key: restart, no re-validation
        if key.expiration is not None and (is_zero_time(key.expiration) or key.expiration <= now):
            return RegisterResponse(error="authkey expired")
        if key.used and not key.reusable:
            return RegisterResponse(error="authkey already used")
        node = await self._upsert(req, mkey, key.user_id, "authkey", key)
        if not key.reusable and not key.used:
            await self.state.save_preauthkey(replace(key, used=True))
        return self.success(node)

    async def _upsert(self, req: RegisterRequest, mkey: MachinePublic, user_id: int | None,
                      method: str, key: PreAuthKey | None) -> Node:
        """Same machine and user: update the node in place (same id and addresses); else a new node."""
        hostname = sanitize_hostname(req.hostinfo.get("Hostname"), str(mkey))
        expiry = req.expiry if req.expiry is not None else (ZERO_TIME if method == "authkey" else None)
        tags = sorted(set(key.tags)) if key else []
        existing = self.state.node_by_machine_key(mkey, user_id)
        if existing is not None:
            return await self.state.modify_node(
                existing.id, node_key=req.node_key, hostinfo=req.hostinfo, hostname=hostname,
                expiry=expiry, auth_key_id=key.id if key else existing.auth_key_id,
                forced_tags=sorted(set(existing.forced_tags) | set(tags)), register_method=method,
            )
        return await self.state.add_node(lambda: Node(
            id=0, machine_key=mkey, node_key=req.node_key, hostinfo=req.hostinfo, hostname=hostname,
            given_name=hostname, user_id=user_id, register_method=method, forced_tags=tags,
            auth_key_id=key.id if key else None, expiry=expiry, last_seen=utcnow(),
        ))

    async def _interactive(self, req: RegisterRequest, mkey: MachinePublic) -> RegisterResponse:
        self._prune()
        if req.followup:
            pending = self.pending.get(req.followup.rstrip("/").rsplit("/", 1)[-1])
            if pending is not None and pending.machine_key == mkey:
                try:
                    node = await asyncio.shield(pending.future)
                except RegistrationExpired:
                    pass
                else:
                    return self.success(node)
        pending = PendingRegistration(new_registration_id(), mkey, req)
        self.pending[pending.id] = pending
        log.info("interactive registration pending id=%s", pending.id)
        return RegisterResponse(auth_url=f"{self.server_url}/register/{pending.id}")

    def _prune(self) -> None:
        cutoff = time.monotonic() - self.cache_ttl
        for reg_id, pending in list(self.pending.items()):
            if pending.created < cutoff:
                del self.pending[reg_id]
                if not pending.future.done():
                    pending.future.set_exception(RegistrationExpired())

    # ---- admin side ----------------------------------------------------------------------

    async def complete(self, registration_id: str, user_name: str) -> Node:
        """``nodes register --key ID --user NAME``: create the node and wake the waiting client."""
        self._prune()
        pending = self.pending.get(registration_id)
        if pending is None:
            raise NotFound("node not found in registration cache")
        user = self.state.user_by_name(user_name)
        node = await self._upsert(pending.request, pending.machine_key, user.id, "cli", None)
        del self.pending[registration_id]
        if not pending.future.done():
            pending.future.set_result(node)
        return node

    def close(self) -> None:
        for pending in self.pending.values():
            if not pending.future.done():
                pending.future.set_exception(RegistrationExpired())
