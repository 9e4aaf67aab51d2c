"""HTTP/1.1 front of the standalone relay: `/derp` upgrades, probe routes, `/derpmap`, `/metrics`.

pyscale has its own listener and calls `DerpServer.serve_upgraded` directly; this module is what
`python -m derp` puts on its TCP (or TLS) socket. Requests are small GET/HEAD heads; bodies are not expected
and a request with one gets `Connection: close` semantics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import http as derp_http
from . import metrics
from .server import DerpServer

log = logging.getLogger("derp.http")

MAX_REQUEST_HEAD = 16 << 10
HEAD_TIMEOUT = 30.0


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


class BadRequest(Exception):
    pass


def parse_head(head: bytes) -> Request:
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise BadRequest("malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise BadRequest("unsupported HTTP version")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest("malformed header line")
        headers.append((name, value.strip()))
    return Request(method, target, version, headers)


def one_region_map(
    *, region_id: int, region_code: str, region_name: str, host: str, derp_port: int, stun_port: int,
    ipv4: str | None = None, ipv6: str | None = None, insecure_for_tests: bool = False,
) -> dict[str, Any]:
    """A DERP map with this relay as the only node (tailcfg.DERPMap JSON)."""
    node: dict[str, Any] = {"Name": f"{region_id}a", "RegionID": region_id, "HostName": host}
    if ipv4:
        node["IPv4"] = ipv4
    if ipv6:
        node["IPv6"] = ipv6
    node["STUNPort"] = stun_port
    node["DERPPort"] = derp_port
    if insecure_for_tests:
        node["InsecureForTests"] = True
    region = {"RegionID": region_id, "RegionCode": region_code, "RegionName": region_name, "Nodes": [node]}
    return {"Regions": {str(region_id): region}}


class HttpFront:
    def __init__(self, server: DerpServer, *, derpmap: dict[str, Any] | None = None,
                 metrics_prefix: str = metrics.DEFAULT_PREFIX,
                 extra_stats: Callable[[], dict[str, int]] | None = None) -> None:
        self.server = server
        self._extra_stats = extra_stats
        self._derpmap: bytes | None = None
        self._metrics_prefix = metrics_prefix
        self.set_derpmap(derpmap)

    def set_derpmap(self, derpmap: dict[str, Any] | None) -> None:
        self._derpmap = json.dumps(derpmap).encode() if derpmap is not None else None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """asyncio.start_server callback: serve requests until an upgrade, close or error."""
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
                request = parse_head(head[:-4])
                if request.target.split("?", 1)[0] == derp_http.DERP_PATH:
                    await self._derp(request, reader, writer)
                    return
                if not await self._plain(request, writer):
                    return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass
        except BadRequest as exc:
            with contextlib.suppress(OSError):
                writer.write(derp_http.HttpResponse(400, "Bad Request", body=str(exc).encode()).encode())
        finally:
            writer.close()

    async def _derp(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        kind = derp_http.upgrade_kind(request.headers)
        if kind == "derp":
            fast = derp_http.is_fast_start(request.headers)
            await self.server.serve_upgraded(reader, writer, fast_start=fast)
        elif kind == "websocket":
            from .websocket import serve_websocket

            await serve_websocket(self.server, reader, writer, request.headers)
        else:
            writer.write(derp_http.upgrade_required().encode())
            await writer.drain()

    async def _plain(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Answer a non-upgrade request; True when the connection may carry another one."""
        response = self.response_for(request)
        data = response.encode(close=False)
        if request.method == "HEAD":
            data = data[: len(data) - len(response.body)]
        writer.write(data)
        await writer.drain()
        keep_alive = (request.header("connection") or "").lower() != "close"
        return keep_alive and request.header("content-length") in (None, "0")

    def response_for(self, request: Request) -> derp_http.HttpResponse:
        path = request.target.split("?", 1)[0]
        routed = derp_http.route(request.method, path, request.headers)
        if routed is not None:
            return routed
        if path == "/derpmap" and self._derpmap is not None:
            return derp_http.HttpResponse(200, "OK", [("Content-Type", "application/json")], self._derpmap)
        if path == "/metrics":
            figures = self.server.stats() | (self._extra_stats() if self._extra_stats else {})
            text = metrics.prometheus_text(figures, prefix=self._metrics_prefix).encode()
            return derp_http.HttpResponse(200, "OK", [("Content-Type", metrics.CONTENT_TYPE)], text)
        if path == "/":
            body = b"<html><body><h1>DERP</h1><p>This is a Tailscale DERP relay.</p></body></html>\n"
            return derp_http.HttpResponse(200, "OK", [("Content-Type", "text/html; charset=utf-8")], body)
        return derp_http.HttpResponse(404, "Not Found", [("Content-Type", "text/plain")], b"not found\n")
