"""Map sessions: the first message is a full map, later changes go out as deltas, every message is
u32 little-endian length + one zstd frame of JSON."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import zstandard

from pyscale.db import Database
from pyscale.keys import DiscoPublic, MachinePublic, NodePublic
from pyscale.mapper.build import MapContext, Mapper
from pyscale.mapper.session import KEEPALIVE_FRAME, MapSession
from pyscale.state.ipam import IPAllocator
from pyscale.state.model import Node
from pyscale.state.store import State
from tests.state.test_state_registration import V4, V6


def decode(frame: bytes) -> dict[str, Any]:
    (length,) = struct.unpack("<I", frame[:4])
    assert length == len(frame) - 4
    out: dict[str, Any] = json.loads(zstandard.ZstdDecompressor().decompress(frame[4:]))
    return out


def _node(i: int, user_id: int) -> Node:
    return Node(0, MachinePublic(bytes([i]) * 32), NodePublic(bytes([i]) * 32), DiscoPublic(bytes([i]) * 32),
                hostname=f"n{i}", given_name=f"n{i}", user_id=user_id)


@pytest.mark.asyncio
async def test_full_then_deltas(tmp_path: Path) -> None:
    db = await Database.open(str(tmp_path / "db.sqlite"))
    state = await State.load(db, IPAllocator(V4, V6))
    user = await state.create_user("alice")
    me = await state.add_node(lambda: _node(1, user.id))
    peer = await state.add_node(lambda: _node(2, user.id))
    ctx = MapContext(domain="127.0.0.1", base_domain="ts.test", dns_config={"Proxied": True},
                     derp_map=lambda: {"Regions": {}})
    mapper = Mapper(state, ctx)
    session = MapSession(mapper, me.id, 130, state.bus.subscribe(), batch_delay=0)
    stream = session.messages()

    full = decode(await anext(stream))
    assert full["Node"]["ID"] == me.id and full["Node"]["Name"] == "n1.ts.test."
    assert [p["ID"] for p in full["Peers"]] == [peer.id]
    assert full["PacketFilters"]["base"][0]["SrcIPs"] == ["*"] and full["Debug"] == {"DisableLogTail": True}
    assert full["DNSConfig"] == {"Proxied": True} and full["Domain"] == "127.0.0.1"

    state.connect(peer.id)  # online: a patch, not a full map
    patch = decode(await asyncio.wait_for(anext(stream), 5))
    assert patch["PeersChangedPatch"] == [{"NodeID": peer.id, "Online": True}] and "Peers" not in patch

    await state.modify_node(peer.id, endpoints=["192.0.2.1:41641"])  # data change: the changed peer only
    changed = decode(await asyncio.wait_for(anext(stream), 5))
    assert [p["ID"] for p in changed["PeersChanged"]] == [peer.id] and "Peers" not in changed
    assert changed["PeersChanged"][0]["Endpoints"] == ["192.0.2.1:41641"]

    third = await state.add_node(lambda: _node(3, user.id))
    added = decode(await asyncio.wait_for(anext(stream), 5))
    assert [p["ID"] for p in added["PeersChanged"]] == [third.id]

    await state.delete_node(third.id)
    removed = decode(await asyncio.wait_for(anext(stream), 5))
    assert removed["PeersRemoved"] == [third.id] and "Node" not in removed

    await state.rename_node(me.id, "renamed")  # the viewer's own change: Node, no peers
    own = decode(await asyncio.wait_for(anext(stream), 5))
    assert own["Node"]["Name"] == "renamed.ts.test." and "PeersChanged" not in own
    await stream.aclose()
    state.close()
    await db.close()


def test_keepalive_frame_is_exact() -> None:
    assert decode(KEEPALIVE_FRAME) == {"KeepAlive": True}


@pytest.mark.asyncio
async def test_router_failover_and_expiry_reach_peers(tmp_path: Path) -> None:
    """Parts of a peer's wire form that live outside its record (primary routes, expired) are never
    served stale from the encode cache."""
    from datetime import UTC, datetime, timedelta

    from pyscale.state.events import KeyExpiryChanged

    db = await Database.open(str(tmp_path / "db.sqlite"))
    state = await State.load(db, IPAllocator(V4, V6))
    state.offline_grace = 0
    user = await state.create_user("alice")
    viewer = await state.add_node(lambda: _node(1, user.id))
    routers = []
    for i in (2, 3):
        node = await state.add_node(lambda i=i: _node(i, user.id))
        routers.append(await state.modify_node(node.id, approved_routes=["10.0.0.0/24"],
                                               hostinfo={"Hostname": f"n{i}", "RoutableIPs": ["10.0.0.0/24"]}))
        state.connect(node.id)
    mapper = Mapper(state, MapContext(domain="x", base_domain="", dns_config={}, derp_map=lambda: {}))
    stream = MapSession(mapper, viewer.id, 130, state.bus.subscribe(), batch_delay=0).messages()
    full = decode(await anext(stream))
    assert {p["ID"]: p["PrimaryRoutes"] for p in full["Peers"]} == {2: ["10.0.0.0/24"], 3: []}

    await state.disconnect(routers[0].id)  # the primary goes: the route moves to router 3
    moved = decode(await asyncio.wait_for(anext(stream), 5))
    assert {p["ID"]: p["PrimaryRoutes"] for p in moved["Peers"]} == {2: [], 3: ["10.0.0.0/24"]}
    assert "10.0.0.0/24" in next(p for p in moved["Peers"] if p["ID"] == 3)["AllowedIPs"]

    soon = datetime.now(UTC) + timedelta(milliseconds=200)
    await state.modify_node(routers[1].id, expiry=soon)
    assert decode(await asyncio.wait_for(anext(stream), 5))["PeersChanged"][0]["Expired"] is False
    await asyncio.sleep(0.3)
    state.bus.publish(KeyExpiryChanged(routers[1].id))  # what the app's expiry loop sends when it passes
    expired = decode(await asyncio.wait_for(anext(stream), 5))
    assert expired["PeersChanged"][0]["Expired"] is True and expired["PeersChanged"][0]["MachineAuthorized"] is False
    await stream.aclose()
    state.close()
    await db.close()
