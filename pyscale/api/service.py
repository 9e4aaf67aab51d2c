"""The 25 operations of ``headscale.v1.HeadscaleService`` (REST v1), as Headscale v0.27.1 does them.

Each handler decodes its request the grpc-gateway way (path, query, protojson body), calls one
State (or Registrar) method, and returns the response message in protojson shape. Domain
errors propagate as PyscaleError and become ``{"code","message","details"}`` at the edge.
Headscale quirks kept on purpose: ListNodes alone fills ``validTags`` and adds exit routes to
``subnetRoutes``; SetApprovedRoutes returns primaries only; an exit route approves both families.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from pyscale.api.auth import new_api_key
from pyscale.api.policytext import PolicyInvalid, validate_policy
from pyscale.api.protojson import Body, query_bool, timestamp_text, uint64_text
from pyscale.api.shapes import (
    apikey_json,
    exit_routes,
    listed_valid_tags,
    node_json,
    preauthkey_json,
    user_json,
)
from pyscale.control.http1 import Request
from pyscale.errors import Invalid, NotFound, PyscaleError
from pyscale.keys import MachinePublic, NodePublic, PrivateKey
from pyscale.mapper.build import Mapper
from pyscale.policy import PolicyError
from pyscale.state.model import ZERO_TIME, ApiKey, Node, utcnow
from pyscale.state.registration import REGISTRATION_ID_LEN, PendingRegistration, Registrar
from pyscale.state.store import State
from pyscale.tailcfg.messages import RegisterRequest

log = logging.getLogger("pyscale.api")

PathArgs = dict[str, str]
EXIT_V4, EXIT_V6 = "0.0.0.0/0", "::/0"


class Unknown(PyscaleError):
    """A plain error in Headscale (gRPC code Unknown, HTTP 500)."""

    http_status = 500
    grpc_code = 2


def validate_tag(tag: str) -> None:
    if not tag.startswith("tag:"):
        raise Invalid("tag must start with the string 'tag:'")
    if tag.lower() != tag:
        raise Invalid("tag should be lowercase")
    if len(tag.split()) > 1:
        raise Invalid("tag should not contains space")


def normalise_routes(routes: list[str]) -> list[str]:
    """Parse, expand an exit route to both families, sort (v4 before v6) and de-duplicate."""
    parsed: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for route in routes:
        try:
            net = ipaddress.ip_network(route, strict=False)
        except ValueError:
            raise Unknown(f'parsing route: netip.ParsePrefix("{route}"): invalid prefix') from None
        if str(net) in (EXIT_V4, EXIT_V6):
            parsed.update((ipaddress.ip_network(EXIT_V4), ipaddress.ip_network(EXIT_V6)))
        else:
            parsed.add(net)
    ordered = sorted(parsed, key=lambda n: (n.version, n.network_address, n.prefixlen))
    return [str(n) for n in ordered]


def registration_id(text: str) -> str:
    if len(text) != REGISTRATION_ID_LEN:
        raise Invalid("registration ID must be 24 characters long")
    return text


class HeadscaleService:
    def __init__(self, state: State, registrar: Registrar, mapper: Mapper, *, policy_mode: str = "file",
                 policy_path: str = "", ip_prefixes: tuple[Any, Any] | None = None) -> None:
        self.state = state
        self.registrar = registrar
        self.mapper = mapper
        self.policy_mode = policy_mode
        self.policy_path = policy_path
        self.ip_prefixes = ip_prefixes
        self.may_have_tag: Callable[[Node, str], bool] = lambda node, tag: False  # policy tagOwners hook
        self.on_api_key_removed: Callable[[int], None] = lambda key_id: None
        # Set by the app: validate against the live topology, store, and switch the running policy.
        self.apply_policy: Callable[[str], Awaitable[datetime]] | None = None
        # Set by the app: the policy text in force. In file mode that is what `policy get` shows, so
        # after a refused reload it shows the policy still serving, not the rejected file.
        self.policy_in_force: Callable[[], str] | None = None

    # ---- users ---------------------------------------------------------------------------

    async def create_user(self, req: Request, _: PathArgs) -> Any:
        b = Body(req.body)
        user = await self.state.create_user(b.string("name"), b.string("displayName"), b.string("email"),
                                            b.string("pictureUrl"))
        return {"user": user_json(user)}

    async def rename_user(self, req: Request, p: PathArgs) -> Any:
        user_id = uint64_text(p["oldId"], "old_id")
        return {"user": user_json(await self.state.rename_user(user_id, p["newName"]))}

    async def delete_user(self, req: Request, p: PathArgs) -> Any:
        await self.state.delete_user(uint64_text(p["id"], "id"))
        return {}

    async def list_users(self, req: Request, _: PathArgs) -> Any:
        q = req.query
        users = sorted(self.state.users.values(), key=lambda u: u.id)
        if q.get("name"):
            users = [u for u in users if u.name == q["name"]]
        elif q.get("email"):
            users = [u for u in users if u.email == q["email"]]
        elif q.get("id") and uint64_text(q["id"], "id"):
            users = [u for u in users if u.id == int(q["id"])]
        return {"users": [user_json(u) for u in users]}

    # ---- pre-auth keys -------------------------------------------------------------------

    async def create_pre_auth_key(self, req: Request, _: PathArgs) -> Any:
        b = Body(req.body)
        tags = b.strings("aclTags")
        for tag in tags:
            validate_tag(tag)
        user = self.state.user(b.uint64("user"))
        key = await self.state.create_preauthkey(
            user.id, reusable=b.boolean("reusable"), ephemeral=b.boolean("ephemeral"),
            expiration=b.timestamp("expiration") or ZERO_TIME, tags=tags)
        return {"preAuthKey": preauthkey_json(key, self.state)}

    async def expire_pre_auth_key(self, req: Request, _: PathArgs) -> Any:
        b = Body(req.body)
        key = self.state.preauthkey_by_secret(b.string("key"))
        if key is None:
            raise NotFound("AuthKey not found")
        if key.user_id != b.uint64("user"):
            raise Unknown("preauth key does not belong to user")
        await self.state.expire_preauthkey(key.user_id, key.key)
        return {}

    async def list_pre_auth_keys(self, req: Request, _: PathArgs) -> Any:
        user = self.state.user(uint64_text(req.query.get("user", "0"), "user"))
        keys = sorted((k for k in self.state.preauthkeys.values() if k.user_id == user.id), key=lambda k: k.id)
        return {"preAuthKeys": [preauthkey_json(k, self.state) for k in keys]}

    # ---- nodes ---------------------------------------------------------------------------

    def _node_id(self, p: PathArgs) -> int:
        return uint64_text(p["nodeId"], "node_id")

    def _node(self, node_id: int) -> dict[str, Any]:
        return node_json(self.state.node(node_id), self.state)

    async def register_node(self, req: Request, _: PathArgs) -> Any:
        reg_id = registration_id(req.query.get("key", ""))
        user_name = req.query.get("user", "")
        try:
            self.state.user_by_name(user_name)
        except NotFound as exc:
            raise NotFound(f"looking up user: {exc}") from None
        node = await self.registrar.complete(reg_id, user_name)
        return {"node": self._node(node.id)}

    async def get_node(self, req: Request, p: PathArgs) -> Any:
        node_id = self._node_id(p)
        if node_id not in self.state.nodes:
            raise NotFound("node not found")
        return {"node": self._node(node_id)}

    async def set_tags(self, req: Request, p: PathArgs) -> Any:
        node_id = self._node_id(p)
        tags = Body(req.body).strings("tags")
        for tag in tags:
            validate_tag(tag)
        if node_id not in self.state.nodes:
            raise Invalid(f"node not found in NodeStore: {node_id}")
        await self.state.set_node_tags(node_id, tags)
        return {"node": self._node(node_id)}

    async def set_approved_routes(self, req: Request, p: PathArgs) -> Any:
        node_id = self._node_id(p)
        routes = normalise_routes(Body(req.body).strings("routes"))
        if node_id not in self.state.nodes:
            raise Invalid(f"node not found in NodeStore: {node_id}")
        node = await self.state.set_approved_routes(node_id, routes)
        return {"node": node_json(node, self.state, subnet_routes=self.mapper.primary_routes(node))}

    async def delete_node(self, req: Request, p: PathArgs) -> Any:
        node_id = self._node_id(p)
        if node_id not in self.state.nodes:
            raise NotFound("node not found")
        await self.state.delete_node(node_id)
        return {}

    async def expire_node(self, req: Request, p: PathArgs) -> Any:
        node_id = self._node_id(p)
        raw = req.query.get("expiry", "")
        when = timestamp_text(raw, "expiry") if raw else utcnow()
        self.state.node(node_id)
        await self.state.expire_node(node_id, when)
        return {"node": self._node(node_id)}

    async def rename_node(self, req: Request, p: PathArgs) -> Any:
        node_id = self._node_id(p)
        self.state.node(node_id)
        await self.state.rename_node(node_id, p["newName"])
        return {"node": self._node(node_id)}

    async def list_nodes(self, req: Request, _: PathArgs) -> Any:
        nodes = sorted(self.state.nodes.values(), key=lambda n: n.id)
        if req.query.get("user"):
            user = self.state.user_by_name(req.query["user"])
            nodes = [n for n in nodes if n.user_id == user.id]
        return {"nodes": [self._listed(n) for n in nodes]}

    def _listed(self, node: Node) -> dict[str, Any]:
        subnet = self.mapper.primary_routes(node) + exit_routes(node)
        return node_json(node, self.state, subnet_routes=subnet,
                         valid_tags=listed_valid_tags(node, self.may_have_tag))

    async def move_node(self, req: Request, p: PathArgs) -> Any:
        node_id = self._node_id(p)
        user_id = Body(req.body).uint64("user")
        if node_id not in self.state.nodes:
            raise NotFound(f"node not found: {node_id}")
        if user_id not in self.state.users:
            raise NotFound(f"user not found: user {user_id} not found")
        await self.state.move_node(node_id, user_id)
        return {"node": self._node(node_id)}

    async def backfill_node_ips(self, req: Request, _: PathArgs) -> Any:
        if not query_bool(req.query.get("confirmed", ""), "confirmed"):
            raise Unknown("not confirmed, aborting")
        return {"changes": await self.state.backfill_node_ips()}

    # ---- API keys ------------------------------------------------------------------------

    async def create_api_key(self, req: Request, _: PathArgs) -> Any:
        expiration = Body(req.body).timestamp("expiration") or ZERO_TIME
        full, prefix, hashed = new_api_key()
        await self.state.add_apikey(ApiKey(0, prefix, hashed, expiration))
        log.info("API key created prefix=%s", prefix)
        return {"apiKey": full}

    def _api_key(self, prefix: str) -> ApiKey:
        for key in self.state.apikeys.values():
            if key.prefix == prefix:
                return key
        raise NotFound("record not found")

    async def expire_api_key(self, req: Request, _: PathArgs) -> Any:
        key = self._api_key(Body(req.body).string("prefix"))
        await self.state.save_apikey(replace(key, expiration=utcnow()))
        return {}

    async def list_api_keys(self, req: Request, _: PathArgs) -> Any:
        keys = sorted(self.state.apikeys.values(), key=lambda k: k.id)
        return {"apiKeys": [apikey_json(k) for k in keys]}

    async def delete_api_key(self, req: Request, p: PathArgs) -> Any:
        key = self._api_key(p["prefix"])
        await self.state.delete_apikey(key.id)
        self.on_api_key_removed(key.id)
        return {}

    # ---- policy --------------------------------------------------------------------------

    async def get_policy(self, req: Request, _: PathArgs) -> Any:
        if self.policy_mode == "database":
            text, updated = await self.state.policy_text()
            if text is None:
                raise Unknown("loading ACL from database: record not found")
            from pyscale.api.shapes import ts

            return {"policy": text, "updatedAt": ts(updated)}
        if self.policy_mode == "file" and self.policy_path and self.policy_in_force is not None:
            return {"policy": self.policy_in_force(), "updatedAt": None}
        if self.policy_mode == "file":
            path = os.path.abspath(self.policy_path)
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    return {"policy": f.read(), "updatedAt": None}
            except OSError as exc:
                raise Unknown(f'reading policy from path "{path}": {exc.strerror}') from None
        raise Unknown(f'no supported policy mode found in configuration, policy.mode: "{self.policy_mode}"')

    async def set_policy(self, req: Request, _: PathArgs) -> Any:
        if self.policy_mode != "database":
            raise Unknown("update is disabled for modes other than 'database'")
        text = Body(req.body).string("policy")
        check_policy(text)
        from pyscale.api.shapes import ts

        if self.apply_policy is None:
            updated = await self.state.set_policy_text(text)
        else:
            try:
                updated = await self.apply_policy(text)
            except PolicyError as exc:
                raise Unknown(f"setting policy: {exc}") from None
        return {"policy": text, "updatedAt": ts(updated)}

    # ---- debug and health ----------------------------------------------------------------

    async def debug_create_node(self, req: Request, _: PathArgs) -> Any:
        b = Body(req.body)
        user = self.state.user_by_name(b.string("user"))
        routes = [str(ipaddress.ip_network(r, strict=False)) for r in _checked_routes(b.strings("routes"))]
        reg_id = registration_id(b.string("key"))
        name = b.string("name")
        hostinfo = {"RoutableIPs": routes, "OS": "TestOS", "Hostname": name}
        node_key = NodePublic(PrivateKey.generate().public_raw())
        machine_key = MachinePublic(secrets.token_bytes(32))
        request = RegisterRequest(version=0, node_key=node_key, old_node_key=NodePublic.zero(), auth_key=None,
                                  expiry=None, followup="", hostinfo=hostinfo, ephemeral=False)
        self.registrar.pending[reg_id] = PendingRegistration(reg_id, machine_key, request)
        log.info("debug node %r waiting in the registration cache", name)
        shown = Node(id=0, machine_key=machine_key, node_key=node_key, hostinfo=hostinfo, hostname=name,
                     user_id=user.id, expiry=ZERO_TIME, last_seen=ZERO_TIME, created_at=ZERO_TIME)
        return {"node": node_json(shown, self.state)}

    async def health(self, req: Request, _: PathArgs) -> Any:
        ok = await self.state.ping_database()
        if not ok:
            raise Unknown("database ping failed")
        return {"databaseConnectivity": True}


def _checked_routes(routes: list[str]) -> list[str]:
    for route in routes:
        try:
            ipaddress.ip_network(route, strict=False)
        except ValueError:
            raise Unknown(f'netip.ParsePrefix("{route}"): invalid prefix') from None
    return routes


def check_policy(text: str) -> None:
    try:
        validate_policy(text)
    except PolicyInvalid as exc:
        raise Unknown(f"setting policy: {exc}") from None
