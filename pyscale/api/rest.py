"""REST API v1 (the subset the CLI and headscale-ui need first), in grpc-gateway's conventions.

Requests on the TCP listener need ``Authorization: Bearer <prefix>.<secret>`` (an API key in
Headscale v0.27.1's format, the secret checked against its bcrypt hash); the unix socket is
trusted like Headscale's. Domain errors become ``{"code", "message", "details"}`` here, once.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import bcrypt

from pyscale.api.shapes import apikey_json, node_json, preauthkey_json, ts, user_json
from pyscale.control.http1 import Request, Response
from pyscale.errors import Invalid, NotFound, PyscaleError
from pyscale.mapper.build import Mapper
from pyscale.state.model import ApiKey, utcnow
from pyscale.state.policystate import PolicyState
from pyscale.state.registration import Registrar
from pyscale.state.store import State
from pyscale.tailcfg.timefmt import TimeFormatError, parse_time

Handler = Callable[[Request, "re.Match[str]"], Awaitable[Any]]
API_KEY_PREFIX_LEN = 7
API_KEY_SECRET_LEN = 32


def _id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Invalid(f"invalid id {text!r}") from None


def _time_or_none(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return parse_time(str(value))
    except TimeFormatError as exc:
        raise Invalid(str(exc)) from exc


class RestApi:
    def __init__(self, state: State, registrar: Registrar, mapper: Mapper, *, policy: PolicyState | None = None,
                 set_policy: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.state = state
        self.registrar = registrar
        self.mapper = mapper
        self.policy = policy
        self.set_policy = set_policy
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        r = self._route
        r("GET", r"/api/v1/user", self.list_users)
        r("POST", r"/api/v1/user", self.create_user)
        r("POST", r"/api/v1/user/(?P<id>[^/]+)/rename/(?P<name>[^/]+)", self.rename_user)
        r("DELETE", r"/api/v1/user/(?P<id>[^/]+)", self.delete_user)
        r("GET", r"/api/v1/preauthkey", self.list_preauthkeys)
        r("POST", r"/api/v1/preauthkey", self.create_preauthkey)
        r("POST", r"/api/v1/preauthkey/expire", self.expire_preauthkey)
        r("GET", r"/api/v1/node", self.list_nodes)
        r("POST", r"/api/v1/node/register", self.register_node)
        r("GET", r"/api/v1/node/(?P<id>\d+)", self.get_node)
        r("DELETE", r"/api/v1/node/(?P<id>\d+)", self.delete_node)
        r("POST", r"/api/v1/node/(?P<id>\d+)/expire", self.expire_node)
        r("POST", r"/api/v1/node/(?P<id>\d+)/rename/(?P<name>[^/]+)", self.rename_node)
        r("GET", r"/api/v1/apikey", self.list_apikeys)
        r("POST", r"/api/v1/apikey", self.create_apikey)
        r("POST", r"/api/v1/apikey/expire", self.expire_apikey)
        r("DELETE", r"/api/v1/apikey/(?P<prefix>[^/]+)", self.delete_apikey)
        r("GET", r"/api/v1/health", self.health)
        r("GET", r"/api/v1/policy", self.get_policy)
        r("PUT", r"/api/v1/policy", self.put_policy)

    def _route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern + "$"), handler))

    # ---- edges ---------------------------------------------------------------------------

    async def trusted(self, req: Request) -> Response:
        return await self._dispatch(req)

    async def authenticated(self, req: Request) -> Response:
        if not self.check_api_key(req.header("authorization")):
            return Response.text("Unauthorized", 401)
        return await self._dispatch(req)

    def check_api_key(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        prefix, dot, secret = token.strip().partition(".")
        if scheme.lower() != "bearer" or not dot or not prefix or not secret:
            return False
        now = utcnow()
        for key in self.state.apikeys.values():
            if secrets.compare_digest(key.prefix, prefix):
                if key.expiration is None or key.expiration <= now:
                    return False
                return bcrypt.checkpw(secret.encode(), key.hash)
        return False

    async def _dispatch(self, req: Request) -> Response:
        path_matched = False
        for method, pattern, handler in self.routes:
            m = pattern.match(req.path)
            if m is None:
                continue
            path_matched = True
            if method != req.method:
                continue
            try:
                return Response.json(await handler(req, m))
            except PyscaleError as exc:
                return Response.json({"code": exc.grpc_code, "message": str(exc), "details": []}, exc.http_status)
        status = 405 if path_matched else 404
        return Response.json({"code": 5, "message": "Not Found", "details": []}, status)

    # ---- users ---------------------------------------------------------------------------

    async def list_users(self, req: Request, _: re.Match[str]) -> Any:
        q = req.query
        users = sorted(self.state.users.values(), key=lambda u: u.id)
        if q.get("id"):
            users = [u for u in users if str(u.id) == q["id"]]
        if q.get("name"):
            users = [u for u in users if u.name == q["name"]]
        if q.get("email"):
            users = [u for u in users if u.email == q["email"]]
        return {"users": [user_json(u) for u in users]}

    async def create_user(self, req: Request, _: re.Match[str]) -> Any:
        b = req.json()
        user = await self.state.create_user(str(b.get("name") or ""), str(b.get("displayName") or ""),
                                            str(b.get("email") or ""), str(b.get("pictureUrl") or ""))
        return {"user": user_json(user)}

    async def rename_user(self, req: Request, m: re.Match[str]) -> Any:
        return {"user": user_json(await self.state.rename_user(_id(m["id"]), m["name"]))}

    async def delete_user(self, req: Request, m: re.Match[str]) -> Any:
        await self.state.delete_user(_id(m["id"]))
        return {}

    # ---- pre-auth keys -------------------------------------------------------------------

    async def list_preauthkeys(self, req: Request, _: re.Match[str]) -> Any:
        user_id = _id(req.query.get("user", ""))
        self.state.user(user_id)
        keys = sorted((k for k in self.state.preauthkeys.values() if k.user_id == user_id), key=lambda k: k.id)
        return {"preAuthKeys": [preauthkey_json(k, self.state) for k in keys]}

    async def create_preauthkey(self, req: Request, _: re.Match[str]) -> Any:
        b = req.json()
        key = await self.state.create_preauthkey(
            _id(str(b.get("user", ""))), reusable=bool(b.get("reusable")), ephemeral=bool(b.get("ephemeral")),
            expiration=_time_or_none(b.get("expiration")), tags=[str(t) for t in b.get("aclTags") or []])
        return {"preAuthKey": preauthkey_json(key, self.state)}

    async def expire_preauthkey(self, req: Request, _: re.Match[str]) -> Any:
        b = req.json()
        await self.state.expire_preauthkey(_id(str(b.get("user", ""))), str(b.get("key", "")))
        return {}

    # ---- nodes ---------------------------------------------------------------------------

    def _node(self, node_id: int) -> dict[str, Any]:
        node = self.state.node(node_id)
        return node_json(node, self.state, self.mapper.primary_routes(node))

    async def list_nodes(self, req: Request, _: re.Match[str]) -> Any:
        nodes = sorted(self.state.nodes.values(), key=lambda n: n.id)
        if req.query.get("user"):
            user = self.state.user_by_name(req.query["user"])
            nodes = [n for n in nodes if n.user_id == user.id]
        return {"nodes": [self._node(n.id) for n in nodes]}

    async def get_node(self, req: Request, m: re.Match[str]) -> Any:
        return {"node": self._node(_id(m["id"]))}

    async def register_node(self, req: Request, _: re.Match[str]) -> Any:
        key, user = req.query.get("key", ""), req.query.get("user", "")
        if len(key) != 24:
            raise Invalid("registration ID must be 24 characters long")
        node = await self.registrar.complete(key, user)
        return {"node": self._node(node.id)}

    async def delete_node(self, req: Request, m: re.Match[str]) -> Any:
        await self.state.delete_node(_id(m["id"]))
        return {}

    async def expire_node(self, req: Request, m: re.Match[str]) -> Any:
        when = _time_or_none(req.query.get("expiry"))
        await self.state.expire_node(_id(m["id"]), when)
        return {"node": self._node(_id(m["id"]))}

    async def rename_node(self, req: Request, m: re.Match[str]) -> Any:
        await self.state.rename_node(_id(m["id"]), m["name"])
        return {"node": self._node(_id(m["id"]))}

    # ---- API keys ------------------------------------------------------------------------

    async def list_apikeys(self, req: Request, _: re.Match[str]) -> Any:
        return {"apiKeys": [apikey_json(k) for k in sorted(self.state.apikeys.values(), key=lambda k: k.id)]}

    async def create_apikey(self, req: Request, _: re.Match[str]) -> Any:
        expiration = _time_or_none(req.json().get("expiration"))
        prefix = secrets.token_urlsafe(8)[:API_KEY_PREFIX_LEN]
        secret = secrets.token_urlsafe(32)[:API_KEY_SECRET_LEN]
        hashed = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(10, prefix=b"2a"))
        await self.state.add_apikey(ApiKey(0, prefix, hashed, expiration))
        return {"apiKey": f"{prefix}.{secret}"}

    def _apikey(self, prefix: str) -> ApiKey:
        for key in self.state.apikeys.values():
            if key.prefix == prefix:
                return key
        raise NotFound("API key not found")

    async def expire_apikey(self, req: Request, _: re.Match[str]) -> Any:
        key = self._apikey(str(req.json().get("prefix", "")))
        await self.state.save_apikey(replace(key, expiration=utcnow()))
        return {}

    async def delete_apikey(self, req: Request, m: re.Match[str]) -> Any:
        await self.state.delete_apikey(self._apikey(m["prefix"]).id)
        return {}

    async def get_policy(self, req: Request, _: re.Match[str]) -> Any:
        return {"policy": self.policy.text if self.policy else "", "updatedAt": None}

    async def put_policy(self, req: Request, _: re.Match[str]) -> Any:
        if self.set_policy is None:
            raise Invalid("policy updates are not available")
        text = str(req.json().get("policy", ""))
        await self.set_policy(text)
        return {"policy": text, "updatedAt": ts(utcnow())}

    async def health(self, req: Request, _: re.Match[str]) -> Any:
        return {"databaseConnectivity": True}


