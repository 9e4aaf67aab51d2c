"""State + Registrar over a real SQLite database: every registration flow of issue 3, IPAM under
concurrency and across restarts, deltas fanned out as events."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from pyscale.db import Database
from pyscale.keys import MachinePublic, NodePublic
from pyscale.state.events import NodeChanged, NodeRemoved
from pyscale.state.ipam import IPAllocator
from pyscale.state.model import ZERO_TIME
from pyscale.state.registration import Registrar
from pyscale.state.store import State
from pyscale.tailcfg.messages import RegisterRequest

V4 = ipaddress.IPv4Network("100.64.0.0/10")
V6 = ipaddress.IPv6Network("fd7a:115c:a1e0::/48")
LOGOUT = datetime(1970, 1, 1, 0, 2, 3, tzinfo=UTC)


def mkey(i: int) -> MachinePublic:
    return MachinePublic(bytes([i]) * 32)


def nkey(i: int) -> NodePublic:
    return NodePublic(bytes([100 + i]) * 32)


def request(node: int, auth: str | None = None, *, old: int | None = None, expiry: datetime | None = None,
            hostname: str = "host", followup: str = "") -> RegisterRequest:
    return RegisterRequest(130, nkey(node), nkey(old) if old is not None else NodePublic.zero(), auth, expiry,
                           followup, {"Hostname": hostname}, False)


async def open_state(path: Path) -> tuple[Database, State, Registrar]:
    db = await Database.open(str(path))
    state = await State.load(db, IPAllocator(V4, V6, "sequential"))
    return db, state, Registrar(state, "http://127.0.0.1:8080")


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[State, Registrar, int]]:
    db, state, reg = await open_state(tmp_path / "db.sqlite")
    user = await state.create_user("alice")
    yield state, reg, user.id
    state.close()
    await db.close()


@pytest.mark.asyncio
async def test_preauth_key_flows(env: tuple[State, Registrar, int]) -> None:
    state, reg, uid = env
    single = await state.create_preauthkey(uid, reusable=False, ephemeral=False, expiration=None, tags=["tag:x"])
    resp = await reg.register(request(1, single.key, hostname="Laptop"), mkey(1))
    assert resp.machine_authorized and not resp.error and resp.user is not None
    node = state.node_by_node_key(nkey(1))
    assert node is not None and node.hostname == "laptop" and node.forced_tags == ["tag:x"]
    assert node.expiry == ZERO_TIME and str(node.ipv4) == "100.64.0.1" and str(node.ipv6) == "fd7a:115c:a1e0::1"
    assert state.preauthkeys[single.id].used
    # restart of the same machine with the same key: no re-validation, same node
    again = await reg.register(request(1, single.key), mkey(1))
    assert again.machine_authorized and len(state.nodes) == 1
    # any other use of the single-use key fails
    assert (await reg.register(request(2, single.key), mkey(2))).error == "authkey already used"
    assert (await reg.register(request(2, "0" * 48), mkey(2))).error.endswith("AuthKey not found")
    expired = await state.create_preauthkey(uid, reusable=True, ephemeral=False,
                                            expiration=datetime.now(UTC) - timedelta(seconds=1), tags=[])
    assert (await reg.register(request(2, expired.key), mkey(2))).error == "authkey expired"


@pytest.mark.asyncio
async def test_logout_rotation_and_ephemeral(env: tuple[State, Registrar, int]) -> None:
    state, reg, uid = env
    key = await state.create_preauthkey(uid, reusable=True, ephemeral=False, expiration=None, tags=[])
    await reg.register(request(1, key.key), mkey(1))
    # node-key rotation: the new key replaces the old one on the same node (same id, same address)
    node = state.node_by_node_key(nkey(1))
    assert node is not None
    rotated = await reg.register(request(2, old=1), mkey(1))
    assert rotated.machine_authorized and state.node_by_node_key(nkey(1)) is None
    assert state.node_by_node_key(nkey(2)) is not None and state.node_by_node_key(nkey(2)).id == node.id  # type: ignore[union-attr]
    # a node key presented by another machine is refused
    assert (await reg.register(request(2), mkey(9))).error == "node exist with different machine key"
    # logout: expiry in the past, node kept but expired
    out = await reg.register(request(2, expiry=LOGOUT), mkey(1))
    assert out.node_key_expired and not out.machine_authorized
    assert state.nodes[node.id].is_expired(datetime.now(UTC))
    # ephemeral nodes are deleted on logout
    eph = await state.create_preauthkey(uid, reusable=False, ephemeral=True, expiration=None, tags=[])
    await reg.register(request(5, eph.key), mkey(5))
    eph_node = state.node_by_node_key(nkey(5))
    assert eph_node is not None
    await reg.register(request(5, expiry=LOGOUT), mkey(5))
    assert eph_node.id not in state.nodes


@pytest.mark.asyncio
async def test_interactive_registration(env: tuple[State, Registrar, int]) -> None:
    state, reg, _ = env
    first = await reg.register(request(1, hostname="web"), mkey(1))
    assert first.auth_url.startswith("http://127.0.0.1:8080/register/")
    reg_id = first.auth_url.rsplit("/", 1)[1]
    assert len(reg_id) == 24
    waiting = asyncio.create_task(reg.register(request(1, hostname="web", followup=first.auth_url), mkey(1)))
    await asyncio.sleep(0)
    assert not waiting.done()
    node = await reg.complete(reg_id, "alice")
    done = await asyncio.wait_for(waiting, 5)
    assert done.machine_authorized and node.register_method == "cli" and node.expiry is None
    # an unknown follow-up id gets a fresh AuthURL instead of hanging
    fresh = await reg.register(request(3, followup="http://127.0.0.1:8080/register/" + "x" * 24), mkey(3))
    assert fresh.auth_url and not fresh.auth_url.endswith("x" * 24)


@pytest.mark.asyncio
async def test_unique_names_and_events(env: tuple[State, Registrar, int]) -> None:
    state, reg, uid = env
    sub = state.bus.subscribe()
    key = await state.create_preauthkey(uid, reusable=True, ephemeral=False, expiration=None, tags=[])
    await reg.register(request(1, key.key, hostname="box"), mkey(1))
    await reg.register(request(2, key.key, hostname="box"), mkey(2))
    names = sorted(n.given_name for n in state.nodes.values())
    assert names[0] == "box" and names[1].startswith("box-") and len(names[1]) == len("box-") + 8
    events = sub.drain_pending()
    assert [type(e) for e in events if isinstance(e, NodeChanged)] == [NodeChanged, NodeChanged]
    await state.delete_node(state.node_by_node_key(nkey(1)).id)  # type: ignore[union-attr]
    assert isinstance(sub.drain_pending()[-1], NodeRemoved)


@pytest.mark.asyncio
async def test_concurrent_registrations_never_share_an_address(tmp_path: Path) -> None:
    db, state, reg = await open_state(tmp_path / "db.sqlite")
    uid = (await state.create_user("alice")).id
    key = await state.create_preauthkey(uid, reusable=True, ephemeral=False, expiration=None, tags=[])
    results = await asyncio.gather(*(reg.register(request(i, key.key, hostname=f"n{i}"), mkey(i))
                                     for i in range(1, 41)))
    assert all(r.machine_authorized for r in results)
    v4 = [n.ipv4 for n in state.nodes.values()]
    assert len(set(v4)) == 40
    state.close()
    await db.close()
    # after a restart, new nodes continue without reusing any address
    db, state, reg = await open_state(tmp_path / "db.sqlite")
    key2 = next(iter(state.preauthkeys.values()))
    await reg.register(request(50, key2.key, hostname="late"), mkey(50))
    all_v4 = [n.ipv4 for n in state.nodes.values()]
    all_v6 = [n.ipv6 for n in state.nodes.values()]
    assert len(all_v4) == len(set(all_v4)) == 41 and len(set(all_v6)) == 41
    state.close()
    await db.close()


def test_ipam_skips_reserved_and_exhausts() -> None:
    alloc = IPAllocator(ipaddress.IPv4Network("100.100.100.96/29"), None)
    got = [str(alloc.allocate()[0]) for _ in range(5)]  # .96 network, .100 reserved, .103 broadcast
    assert got == ["100.100.100.97", "100.100.100.98", "100.100.100.99", "100.100.100.101", "100.100.100.102"]
    from pyscale.state.ipam import AllocationError

    with pytest.raises(AllocationError):
        alloc.allocate()
    rand = IPAllocator(ipaddress.IPv4Network("100.115.92.0/22"), None, "random")
    got = {rand.allocate()[0] for _ in range(200)}
    assert all(a not in ipaddress.ip_network("100.115.92.0/23") for a in got if a is not None)


@pytest.mark.asyncio
async def test_offline_only_after_the_grace_period(env: tuple[State, Registrar, int]) -> None:
    from pyscale.state.events import OnlineChanged

    state, reg, uid = env
    state.offline_grace = 0.2
    key = await state.create_preauthkey(uid, reusable=True, ephemeral=False, expiration=None, tags=[])
    await reg.register(request(1, key.key), mkey(1))
    node = state.node_by_node_key(nkey(1))
    assert node is not None
    sub = state.bus.subscribe()
    state.connect(node.id)
    await state.disconnect(node.id)
    state.connect(node.id)  # reconnect inside the grace period: no flap
    assert state.is_online(node.id)
    assert [e for e in sub.drain_pending() if isinstance(e, OnlineChanged)] == [OnlineChanged(node.id, True)]
    await state.disconnect(node.id)
    assert state.is_online(node.id)
    event = await asyncio.wait_for(sub.queue.get(), 5)
    while not isinstance(event, OnlineChanged):
        event = await asyncio.wait_for(sub.queue.get(), 5)
    assert event == OnlineChanged(node.id, False) and not state.is_online(node.id)
    assert state.nodes[node.id].last_seen is not None


@pytest.mark.asyncio
async def test_ephemeral_node_deleted_after_inactivity(env: tuple[State, Registrar, int]) -> None:
    state, reg, uid = env
    state.offline_grace, state.ephemeral_timeout = 0, 0.2
    key = await state.create_preauthkey(uid, reusable=True, ephemeral=True, expiration=None, tags=[])
    await reg.register(request(1, key.key), mkey(1))
    node = state.node_by_node_key(nkey(1))
    assert node is not None
    state.connect(node.id)
    await state.disconnect(node.id)  # offline: the inactivity timer starts
    state.connect(node.id)  # back in time: the timer is cancelled
    await asyncio.sleep(0.4)
    assert node.id in state.nodes
    await state.disconnect(node.id)
    for _ in range(50):
        if node.id not in state.nodes:
            break
        await asyncio.sleep(0.05)
    assert node.id not in state.nodes
