"""In-process REST fixtures: a real SQLite database, State, Registrar, Mapper and RestApi.

``ApiEnv.call`` feeds a Request through the same edge the TCP listener uses (API-key check,
routing, handlers) and records which spec operation answered with which status, so the
contract test can prove it covered every operation, success and error.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest_asyncio

from pyscale.api.rest import RestApi
from pyscale.control.http1 import Request
from pyscale.db import Database
from pyscale.keys import MachinePublic, NodePublic
from pyscale.mapper.build import MapContext, Mapper
from pyscale.state.ipam import IPAllocator
from pyscale.state.model import Node
from pyscale.state.registration import Registrar
from pyscale.state.store import State
from tests.api.specschema import SpecValidator

V4 = ipaddress.IPv4Network("100.64.0.0/10")
V6 = ipaddress.IPv6Network("fd7a:115c:a1e0::/48")


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{\w+\}", template)
    return re.compile("[^/]+".join(re.escape(p) for p in parts) + "$")


@dataclass
class Reply:
    status: int
    body: Any
    raw: bytes
    content_type: str


@dataclass
class ApiEnv:
    db: Database
    state: State
    registrar: Registrar
    mapper: Mapper
    api: RestApi
    validator: SpecValidator
    key: str = ""
    seen: dict[str, set[int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def operation(self, method: str, path: str) -> str | None:
        for op_id, (m, template) in self.validator.operations().items():
            if m == method and _template_regex(template).match(path):
                return op_id
        return None

    async def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None, *,
                   auth: str | None = "key", content_type: str = "application/json") -> Reply:
        target = path + ("?" + urlencode(query) if query else "")
        headers = {"host": "127.0.0.1", "content-type": content_type}
        if auth == "key":
            headers["authorization"] = f"Bearer {self.key}"
        elif auth is not None:
            headers["authorization"] = auth
        raw_body = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
        resp = await self.api.authenticated(Request(method, target, headers, raw_body, peer="127.0.0.1"))
        ctype = dict((k.lower(), v) for k, v in resp.headers).get("content-type", "")
        parsed = json.loads(resp.body) if ctype.startswith("application/json") else None
        reply = Reply(resp.status, parsed, resp.body, ctype)
        op = self.operation(method, path)
        if op is not None and resp.status != 401:
            self.seen.setdefault(op, set()).add(resp.status)
            for p in self.validator.validate_response(op, resp.status, parsed):
                self.problems.append(f"{method} {target} -> {resp.status}: {p}")
        return reply

    async def add_node(self, name: str, user_id: int, *, routes: list[str] | None = None,
                       request_tags: list[str] | None = None, n: int = 1) -> Node:
        hostinfo = {"Hostname": name, "RoutableIPs": routes or [], "RequestTags": request_tags or []}
        return await self.state.add_node(lambda: Node(
            id=0, machine_key=MachinePublic(bytes([n]) * 32), node_key=NodePublic(bytes([100 + n]) * 32),
            hostinfo=hostinfo, hostname=name, given_name=name, user_id=user_id, register_method="authkey"))


async def make_env(tmp_path: Path, policy_mode: str = "database", policy_path: str = "") -> ApiEnv:
    db = await Database.open(str(tmp_path / "db.sqlite"))
    state = await State.load(db, IPAllocator(V4, V6, "sequential"))
    registrar = Registrar(state, "http://127.0.0.1:8080")
    ctx = MapContext(domain="127.0.0.1", base_domain="tailnet.test", dns_config={}, derp_map=lambda: {})
    mapper = Mapper(state, ctx)
    api = RestApi(state, registrar, mapper, policy_mode=policy_mode, policy_path=policy_path)
    env = ApiEnv(db, state, registrar, mapper, api, SpecValidator())
    created = await api.trusted(Request("POST", "/api/v1/apikey", {}, b'{"expiration": "2099-01-01T00:00:00Z"}'))
    env.key = json.loads(created.body)["apiKey"]
    return env


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[ApiEnv]:
    e = await make_env(tmp_path)
    try:
        yield e
    finally:
        e.registrar.close()
        e.state.close()
        await e.db.close()
