"""Plain-HTTP routes of the main listener: discovery, upgrade hand-off, health, web pages.

The same router serves the unix socket (for the CLI, trusted, no API key) and the TCP
listener (REST needs an API key there). DERP and the REST API are plugged in by the app.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pyscale import __version__
from pyscale.api import pages
from pyscale.control import ts2021
from pyscale.control.http1 import HIJACKED, Request, Response
from pyscale.keys import MachinePublic, NodePublic, PrivateKey
from pyscale.metrics import observe_request

log = logging.getLogger("pyscale.routes")

_REGISTRATION_ID = re.compile(r"^/register/([^/]+)$")
Route = Callable[[Request], Awaitable[Response]]


@dataclass
class RouterDeps:
    noise_key: PrivateKey
    noise_handler: ts2021.RequestHandler
    health: Callable[[], Awaitable[bool]]
    known_node_key: Callable[[NodePublic], bool]
    derpmap: Callable[[], dict[str, object]]
    derp: Route | None = None  # /derp upgrade + probes, when the embedded relay is on
    api: Route | None = None  # /api/v1
    server_url: str = ""  # for the client set-up pages; empty: taken from the request's Host


class Router:
    def __init__(self, deps: RouterDeps, *, trusted: bool = False) -> None:
        self.deps = deps
        self.trusted = trusted  # unix socket: the CLI, no API key needed

    async def __call__(self, req: Request) -> Response:
        if self.trusted:
            return await self.route(req)
        started = time.monotonic()
        resp = await self.route(req)
        observe_request(req.method, req.path, resp.status, time.monotonic() - started)
        return resp

    async def route(self, req: Request) -> Response:
        path = req.path
        if path == "/key":
            return self.key(req)
        if path == "/ts2021":
            return await self.ts2021(req)
        if path == "/health":
            return await self.health()
        if path == "/version":
            return Response.json({"version": __version__, "commit": "", "buildTime": "", "dirty": False})
        if path == "/robots.txt":
            return Response.text("User-agent: *\nDisallow: /\n")
        if path == "/derpmap/default":
            return Response.json(self.deps.derpmap())
        if path == "/verify" and req.method == "POST":
            return self.verify(req)
        if (m := _REGISTRATION_ID.match(path)) and req.method == "GET":
            return pages.register_page(m.group(1))
        if (path.startswith("/derp") or path == "/generate_204") and self.deps.derp is not None:
            return await self.deps.derp(req)
        if (path == "/api" or path.startswith("/api/")) and self.deps.api is not None:
            return await self.deps.api(req)  # the whole /api subtree is behind the API key, as in Headscale
        if pages.is_page(path):
            return pages.handle(req, self.deps.server_url or f"http://{req.header('host', 'localhost')}")
        return Response(404)

    def key(self, req: Request) -> Response:
        raw = req.query.get("v", "")
        if not raw.isdigit():
            return Response.text("capability version must be set\n", 400)
        if int(raw) < 39:
            return Response(200)
        public = MachinePublic(self.deps.noise_key.public_raw())
        return Response.json({"legacyPublicKey": str(MachinePublic.zero()), "publicKey": str(public)})

    async def ts2021(self, req: Request) -> Response:
        assert req.reader is not None and req.writer is not None
        await ts2021.accept(req.reader, req.writer, req.headers, self.deps.noise_key, self.deps.noise_handler)
        return HIJACKED

    async def health(self) -> Response:
        ok = await self.deps.health()
        body = {"status": "pass" if ok else "fail"}
        return Response.json(body, 200 if ok else 500, "application/health+json; charset=utf-8")

    def verify(self, req: Request) -> Response:
        body = req.json()
        try:
            key = NodePublic.parse(str(body.get("NodePublic", "")))
        except ValueError:
            return Response.text("invalid NodePublic\n", 400)
        return Response.json({"Allow": self.deps.known_node_key(key)})
