"""Handlers for the requests a client sends inside the Noise channel: register and map.

Authentication: the Noise handshake proved the client's machine key; every map request must
name a node key that belongs to a node with that machine key (else 404, like Headscale).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from pyscale.control.ts2021 import H2Request, H2Response
from pyscale.mapper.build import Mapper
from pyscale.mapper.session import KEEPALIVE_FRAME, MapSession
from pyscale.metrics import observe_map_stream
from pyscale.state.model import Node
from pyscale.state.names import sanitize_hostname, to_given_name, unique_given_name
from pyscale.state.registration import Registrar
from pyscale.state.store import State
from pyscale.tailcfg.messages import MapRequest, RegisterRequest, WireError

log = logging.getLogger("pyscale.machine")


class MachineHandlers:
    def __init__(self, state: State, registrar: Registrar, mapper: Mapper) -> None:
        self.state = state
        self.registrar = registrar
        self.mapper = mapper

    async def handle(self, req: H2Request) -> H2Response:
        if req.method != "POST":
            return H2Response(405, b"method not allowed\n", "text/plain; charset=utf-8")
        try:
            if req.path == "/machine/register":
                return await self.register(req)
            if req.path == "/machine/map":
                return await self.map(req)
        except WireError as exc:
            return _error(400, str(exc))
        return _error(404, "not found")

    async def register(self, req: H2Request) -> H2Response:
        body = RegisterRequest.from_json(_json(req))
        resp = await self.registrar.register(body, req.machine_key)
        if resp.error:
            log.info("registration refused for %s: %s", req.machine_key, resp.error)
        return H2Response(200, json.dumps(resp.to_json()).encode())

    async def map(self, req: H2Request) -> H2Response:
        body = MapRequest.from_json(_json(req))
        node = self.state.node_by_node_key(body.node_key)
        if node is None or node.machine_key != req.machine_key:
            return _error(404, "node not found")
        if body.compress and body.compress != "zstd":
            return _error(400, f"unsupported compression {body.compress!r}")
        node = await self._apply(node, body)
        if not body.stream:
            if not body.omit_peers:  # one-shot full map (test helpers only)
                return H2Response(200, b"", stream=self._one_shot(node.id, body.version))
            return H2Response(200, b"", content_type="")
        return H2Response(200, stream=self._stream(node.id, body.version))

    async def _apply(self, node: Node, body: MapRequest) -> Node:
        """Store what the client reports (disco key, endpoints, hostinfo) and fan it out if it changed."""
        hostinfo = body.hostinfo
        if hostinfo is not None and "NetInfo" not in hostinfo and node.hostinfo and "NetInfo" in node.hostinfo:
            hostinfo = {**hostinfo, "NetInfo": node.hostinfo["NetInfo"]}  # keep the last known NetInfo
        changes: dict[str, Any] = {}
        if body.disco_key is not None and body.disco_key != node.disco_key:
            changes["disco_key"] = body.disco_key
        if body.endpoints and body.endpoints != node.endpoints:
            changes["endpoints"] = body.endpoints
        if hostinfo is not None and hostinfo != node.hostinfo:
            changes["hostinfo"] = hostinfo
            if hostinfo.get("Hostname"):
                changes.update(self._follow_hostname(node, str(hostinfo["Hostname"])))
        if not changes:
            return node
        # Endpoints and NetInfo change often; persist them too (Headscale does), then fan out.
        return await self.state.modify_node(node.id, **changes)

    def _follow_hostname(self, old: Node, reported: str) -> dict[str, str]:
        """A new client hostname renames the node, unless an admin gave it its name (Headscale's rule)."""
        hostname = sanitize_hostname(reported, str(old.machine_key))
        if hostname == old.hostname or hostname != reported.lower():
            return {}  # unchanged, or invalid (its replacement name is random: don't churn on every request)
        if old.given_name not in (to_given_name(old.hostname), old.hostname):
            return {"hostname": hostname}
        return {"hostname": hostname,
                "given_name": unique_given_name(hostname, self.state.taken_given_names(except_id=old.id))}

    async def _stream(self, node_id: int, cap: int) -> AsyncIterator[bytes]:
        sub = self.state.bus.subscribe()  # before the full map, so no change falls in between
        self.state.connect(node_id)
        try:
            session = MapSession(self.mapper, node_id, cap, sub).messages()
            async for message in observe_map_stream(session, KEEPALIVE_FRAME):  # latency histograms
                yield message
        finally:
            sub.close()
            await self.state.disconnect(node_id)

    async def _one_shot(self, node_id: int, cap: int) -> AsyncIterator[bytes]:
        from pyscale.mapper.session import frame

        yield frame(self.mapper.full(node_id, cap))


def _json(req: H2Request) -> object:
    try:
        return json.loads(bytes(req.body) or b"{}")
    except ValueError as exc:
        raise WireError(f"invalid JSON body: {exc}") from exc


def _error(status: int, text: str) -> H2Response:
    return H2Response(status, (text + "\n").encode(), "text/plain; charset=utf-8")
