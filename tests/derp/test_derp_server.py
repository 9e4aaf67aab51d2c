"""In-process relay tests: real sockets on 127.0.0.1, DERP clients from derp.client."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from relay_helpers import eventually, running_relay

from derp import frames, protocol
from derp.client import DerpClient, DerpClientError
from derp.mesh import MeshLink
from derp.server import Limits

DISCO = frames.DISCO_MAGIC + bytes(56) + b"disco-body"


async def _connect(url: str, key: bytes | None = None, **kw: object) -> DerpClient:
    return await DerpClient.connect(url, key or os.urandom(32), **kw)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_relays_packets_between_clients() -> None:
    async with running_relay() as relay:
        a, b = await _connect(relay.url), await _connect(relay.url)
        assert a.server_key == relay.server.public_key and a.server_info == {"version": 2}
        a.send(b.public_key, b"hello b")
        b.send(a.public_key, b"hello a")
        got_b, got_a = await b.recv_packet(), await a.recv_packet()
        assert (got_b.src, bytes(got_b.packet)) == (a.public_key, b"hello b")
        assert (got_a.src, bytes(got_a.packet)) == (b.public_key, b"hello a")
        stats = relay.server.stats()
        assert stats["packets_relayed_total"] == 2 and stats["bytes_relayed_total"] == 14
        assert stats["connections_current"] == 2 and stats["clients_current"] == 2
        await a.close()
        await b.close()


@pytest.mark.asyncio
async def test_unknown_destination_and_peer_gone() -> None:
    async with running_relay() as relay:
        a, b = await _connect(relay.url), await _connect(relay.url)
        nobody = os.urandom(32)
        a.send(nobody, b"data is dropped silently")
        a.send(nobody, DISCO)
        ev = await a.recv()
        assert isinstance(ev, protocol.PeerGone) and ev.key == nobody
        assert ev.reason == frames.PeerGoneReason.NOT_HERE
        assert relay.server.stats()["packets_dropped_unknown_dest_total"] == 2
        b.send(a.public_key, b"x")  # b has sent to a: a going away must be reported to... a's peers
        a.send(b.public_key, b"y")
        await b.recv_packet()
        await a.close()
        gone = await b.recv()
        assert isinstance(gone, protocol.PeerGone) and gone.key == a.public_key
        assert gone.reason == frames.PeerGoneReason.DISCONNECTED
        await b.close()


@pytest.mark.asyncio
async def test_duplicate_connections_last_writer_active() -> None:
    async with running_relay() as relay:
        key = os.urandom(32)
        first = await _connect(relay.url, key)
        second = await _connect(relay.url, key)
        sender = await _connect(relay.url)
        assert first.public_key == second.public_key
        key = first.public_key
        sender.send(key, b"to newest")
        assert bytes((await second.recv_packet()).packet) == b"to newest"
        first.note_preferred(True)  # any frame from the older one makes it active again
        await eventually(lambda: relay.server.stats()["home_connections_current"] == 1)
        sender.send(key, b"to first")
        assert bytes((await first.recv_packet()).packet) == b"to first"
        await first.close()
        await eventually(lambda: relay.server.stats()["connections_current"] == 2)
        sender.send(key, b"to remaining")
        assert bytes((await second.recv_packet()).packet) == b"to remaining"
        for c in (second, sender):
            await c.close()


@pytest.mark.asyncio
async def test_verify_client_rejects() -> None:
    allowed = os.urandom(32)
    allowed_pub = protocol.public_key_of(allowed)

    async def verify(key: bytes) -> bool:
        return key == allowed_pub

    async with running_relay(verify_client=verify) as relay:
        ok = await _connect(relay.url, allowed)
        with pytest.raises(DerpClientError):
            await _connect(relay.url)
        assert relay.server.stats()["connections_closed_rejected_total"] == 1
        await ok.close()


@pytest.mark.asyncio
async def test_bad_frame_closes_only_that_client() -> None:
    async with running_relay() as relay:
        good, bad, other = await _connect(relay.url), await _connect(relay.url), await _connect(relay.url)
        bad.write_raw(frames.pack_header(frames.FrameType.SEND_PACKET, 10_000_000))
        await bad.wait_closed_by_server()
        await eventually(lambda: relay.server.stats().get("connections_closed_frame_too_large_total") == 1)
        good.send(other.public_key, b"still fine")
        assert bytes((await other.recv_packet()).packet) == b"still fine"
        for c in (good, bad, other):
            await c.close()


@pytest.mark.asyncio
async def test_connection_limit_and_fast_start() -> None:
    async with running_relay(limits=Limits(max_connections=1)) as relay:
        first = await _connect(relay.url, fast_start=True)  # no 101, frames start at once
        with pytest.raises(DerpClientError):
            await _connect(relay.url)
        assert relay.server.stats()["connections_closed_connection_limit_total"] == 1
        await first.close()


@pytest.mark.asyncio
async def test_ping_pong_keepalive_and_idle_timeout() -> None:
    limits = Limits(idle_timeout=30.0, keepalive_interval=10.0, keepalive_jitter=0.0,
                    housekeeping_interval=3600)
    async with running_relay(limits=limits) as relay:
        c = await _connect(relay.url)
        c.ping(b"pingdata")
        pong = await c.recv()
        assert isinstance(pong, protocol.PongReceived) and pong.data == b"pingdata"
        now = time.monotonic()
        relay.server.tick(now + 11)
        assert isinstance(await c.recv(), protocol.KeepAlive)
        assert isinstance(await c.recv(), protocol.PingReceived)  # server pings clients that ack pings
        relay.server.tick(time.monotonic() + 31)
        await c.wait_closed_by_server()
        await eventually(lambda: relay.server.stats().get("connections_closed_idle_timeout_total") == 1)
        await c.close()


@pytest.mark.asyncio
async def test_bounded_queue_drops_data_but_not_disco() -> None:
    limits = Limits(send_queue_bytes=64 << 10, disco_queue_bytes=64 << 10, write_timeout=3600)
    async with running_relay(limits=limits) as relay:
        sender = await _connect(relay.url)
        stalled = await _connect(relay.url)  # never reads: its queue fills up
        packet = b"\x00" * 1200
        while relay.server.stats().get("packets_dropped_queue_full_total", 0) < 10:
            for _ in range(200):
                sender.send(stalled.public_key, packet)
            await sender.drain()
            await asyncio.sleep(0.01)
        before = relay.server.stats()["packets_relayed_total"]
        for _ in range(20):
            sender.send(stalled.public_key, DISCO)
        await sender.drain()
        await eventually(lambda: relay.server.stats()["packets_relayed_total"] >= before + 20)
        stats = relay.server.stats()
        assert stats.get("packets_dropped_disco_queue_full_total", 0) == 0
        # bounded: what waits for the stalled client stays near the limits (one read chunk of slack)
        (client,) = [c for c in relay.server._conns if c.key == stalled.public_key]
        assert client.queued() <= limits.send_queue_bytes + limits.disco_queue_bytes + limits.read_size
        await sender.close()
        await stalled.close()


@pytest.mark.asyncio
async def test_write_timeout_disconnects_stalled_client() -> None:
    limits = Limits(send_queue_bytes=32 << 10, write_timeout=5.0, housekeeping_interval=3600)
    async with running_relay(limits=limits) as relay:
        sender, stalled = await _connect(relay.url), await _connect(relay.url)
        fake_now = time.monotonic()
        for _ in range(2000):  # keep the queue full while the fake clock advances past write_timeout
            if relay.server.stats().get("connections_closed_write_timeout_total"):
                break
            for _ in range(200):
                sender.send(stalled.public_key, b"\x00" * 1200)
            await sender.drain()
            await asyncio.sleep(0.005)
            relay.server.tick(fake_now)
            fake_now += 2.0
        await eventually(lambda: relay.server.stats().get("connections_closed_write_timeout_total") == 1)
        await sender.close()
        await stalled.close()


@pytest.mark.asyncio
async def test_rate_limit_option() -> None:
    limits = Limits(rate_bytes_per_second=1000, rate_burst_bytes=3000)
    async with running_relay(limits=limits) as relay:
        a, b = await _connect(relay.url), await _connect(relay.url)
        bucket = {"TokenBucketBytesPerSecond": 1000, "TokenBucketBytesBurst": 3000}
        assert a.server_info == {"version": 2} | bucket
        for _ in range(10):
            a.send(b.public_key, b"\x00" * 1000)
        await a.drain()
        await eventually(lambda: relay.server.stats().get("packets_dropped_rate_limited_total", 0) >= 6)
        assert relay.server.stats()["packets_relayed_total"] <= 4
        await a.close()
        await b.close()


@pytest.mark.asyncio
async def test_watch_conns_for_mesh_peers() -> None:
    mesh = os.urandom(32)
    async with running_relay(mesh_key=mesh) as relay:
        plain = await _connect(relay.url)
        watcher = await _connect(relay.url, mesh_key=mesh)
        watcher.watch_conns()
        ev = await watcher.recv()
        assert isinstance(ev, protocol.PeerPresent) and ev.key == plain.public_key
        assert ev.flags == frames.PeerPresentFlags.REGULAR and ev.ip16[-4:] == bytes([127, 0, 0, 1])
        await plain.close()
        gone = await watcher.recv()
        assert isinstance(gone, protocol.PeerGone) and gone.key == plain.public_key
        await watcher.close()


@pytest.mark.asyncio
async def test_two_meshed_relays_forward_packets() -> None:
    mesh = os.urandom(32)
    async with running_relay(mesh_key=mesh) as r1, running_relay(mesh_key=mesh) as r2:
        l1, l2 = MeshLink(r1.server, r2.url), MeshLink(r2.server, r1.url)
        l1.start()
        l2.start()
        await asyncio.wait_for(asyncio.gather(l1.connected.wait(), l2.connected.wait()), 10)
        a = await _connect(r1.url)
        b = await _connect(r2.url)
        await eventually(lambda: r1.server.stats()["remote_clients_current"] == 1)
        a.send(b.public_key, b"across the mesh")
        got = await b.recv_packet()
        assert (got.src, bytes(got.packet)) == (a.public_key, b"across the mesh")
        assert r1.server.stats()["packets_forwarded_mesh_total"] == 1
        await eventually(lambda: r2.server.stats()["remote_clients_current"] == 1)
        b.send(a.public_key, b"and back")
        assert bytes((await a.recv_packet()).packet) == b"and back"
        await a.close()
        await b.close()


@pytest.mark.asyncio
async def test_random_frames_never_crash_the_relay() -> None:
    """Invariant: garbage from clients closes (at most) those clients; the loop sees no exception and
    well-behaved clients keep relaying."""
    import random

    errors: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    rng = random.Random(99)
    # ClosePeer from a mesh peer legitimately disconnects the good clients, so it is left out here
    types = [t.value for t in frames.FrameType if t != frames.FrameType.CLOSE_PEER] + [0x00, 0x7F, 0xFF]
    async with running_relay(mesh_key=b"m" * 32) as relay:
        good_a, good_b = await _connect(relay.url), await _connect(relay.url)
        fuzzers = [await _connect(relay.url, mesh_key=b"m" * 32 if i % 2 else None) for i in range(20)]
        for f in fuzzers:
            chunks = []
            for _ in range(rng.randrange(1, 12)):
                payload = rng.randbytes(rng.choice([0, 1, 8, 32, 33, 64, 65, 300]))
                if rng.random() < 0.3:
                    payload = good_b.public_key + payload  # some packets reach a real peer
                chunks.append(frames.frame(rng.choice(types), payload) if rng.random() < 0.85
                              else rng.randbytes(rng.randrange(1, 12)))
            f.write_raw(b"".join(chunks))
        good_a.send(good_b.public_key, b"still relaying")
        while True:
            got = await good_b.recv_packet()
            if got.src == good_a.public_key:
                break
        assert bytes(got.packet) == b"still relaying"
        for f in fuzzers:
            await f.close()
        await eventually(lambda: relay.server.stats()["connections_current"] == 2)
        await good_a.close()
        await good_b.close()
    loop.set_exception_handler(None)
    assert errors == []


@pytest.mark.asyncio
async def test_close_peer_from_mesh_peer() -> None:
    mesh = os.urandom(32)
    async with running_relay(mesh_key=mesh) as relay:
        plain = await _connect(relay.url)
        peer = await _connect(relay.url, mesh_key=mesh)
        peer.write_raw(frames.close_peer(plain.public_key))
        await plain.wait_closed_by_server()
        await eventually(lambda: relay.server.stats().get("connections_closed_closed_by_mesh_total") == 1)
        await plain.close()
        await peer.close()


@pytest.mark.asyncio
async def test_health_and_restarting_frames() -> None:
    async with running_relay() as relay:
        c = await _connect(relay.url)
        relay.server.set_health("disk full")
        health = await c.recv()
        assert isinstance(health, protocol.Health) and health.problem == "disk full"
        await relay.server.close(restarting=(500, 10_000))
        restarting = await c.recv()
        assert isinstance(restarting, protocol.Restarting)
        assert (restarting.reconnect_in_ms, restarting.try_for_ms) == (500, 10_000)
        await c.wait_closed_by_server()
        await c.close()
