"""Byte-vector and behaviour tests for derp.frames and the sans-IO derp.protocol cores."""

from __future__ import annotations

import json
import os
import random
from typing import Any

import nacl.public
import pytest

from derp import frames, protocol
from derp.frames import FrameType


def _server(vec: dict[str, Any], **kw: Any) -> protocol.ServerConnection:
    keys = vec["server_keys"]
    nonce = bytes.fromhex(keys["serverinfo_nonce_hex"])
    return protocol.ServerConnection(bytes.fromhex(keys["private_hex"]), nonce_source=lambda: nonce, **kw)


def _c2s(conn: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in conn["frames"] if f["dir"] == "c2s"]


def _feed(server: protocol.ServerConnection, data: bytes, one_byte: bool) -> list[protocol.Event]:
    if not one_byte:
        return server.receive_data(data)
    events: list[protocol.Event] = []
    for i in range(len(data)):
        events += server.receive_data(data[i : i + 1])
    return events


def _materialize(events: list[protocol.Event]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for ev in events:
        if isinstance(ev, protocol.SendPacket):
            out.append(("send", bytes(ev.dst), bytes(ev.packet)))
        elif isinstance(ev, protocol.NotePreferred):
            out.append(("preferred", ev.preferred))
        else:
            out.append((type(ev).__name__,))
    return out


def test_server_key_frame_matches_vector(derp_vector: dict[str, Any]) -> None:
    server = _server(derp_vector)
    assert server.server_public.hex() == derp_vector["server_keys"]["public_hex"]
    first = server.data_to_send()
    for conn in derp_vector["connections"]:
        assert first.hex() == conn["frames"][0]["frame_hex"]
        assert conn["server_first_flight_hex"].endswith(first.hex())


def test_server_info_builder_reproduces_vector(derp_vector: dict[str, Any]) -> None:
    keys = derp_vector["server_keys"]
    priv = nacl.public.PrivateKey(bytes.fromhex(keys["private_hex"]))
    for conn in derp_vector["connections"]:
        info = next(f for f in conn["frames"] if f["name"] == "ServerInfo")
        box = nacl.public.Box(priv, nacl.public.PublicKey(bytes.fromhex(conn["client_public_hex"])))
        built = protocol.server_info_frame(box, info["plaintext"].encode(), bytes.fromhex(info["nonce_hex"]))
        assert built.hex() == info["frame_hex"]


@pytest.mark.parametrize("one_byte", [False, True], ids=["whole", "byte-at-a-time"])
def test_replay_client_frames(derp_vector: dict[str, Any], one_byte: bool) -> None:
    keys = derp_vector["server_keys"]
    for conn in derp_vector["connections"]:
        server = _server(derp_vector)
        server.data_to_send()
        c2s = _c2s(conn)
        stream = b"".join(bytes.fromhex(f["frame_hex"]) for f in c2s)
        events = _feed(server, stream, one_byte)
        # The core pauses after ClientInfo until accept(), whatever else has arrived.
        assert len(events) == 1 and isinstance(events[0], protocol.ClientInfoReceived)
        hello = events[0]
        assert hello.client_key.hex() == conn["client_public_hex"]
        assert hello.info.raw == json.loads(c2s[0]["plaintext"])
        assert hello.info.version == 2 and hello.info.can_ack_pings
        assert hello.info.app_name == conn["app"] and not hello.is_mesh_peer
        rest = _materialize(server.accept())
        expected: list[tuple[Any, ...]] = []
        for f in c2s[1:]:
            if f["name"] == "NotePreferred":
                expected.append(("preferred", f["preferred"] == 1))
            elif f["name"] == "SendPacket":
                expected.append(("send", bytes.fromhex(f["dst_public_hex"]), bytes.fromhex(f["packet_hex"])))
        assert rest == expected
        out = server.data_to_send()
        assert out[0] == FrameType.SERVER_INFO and out[5:29].hex() == keys["serverinfo_nonce_hex"]
        box = nacl.public.Box(
            nacl.public.PrivateKey(bytes.fromhex(keys["private_hex"])),
            nacl.public.PublicKey(hello.client_key),
        )
        assert json.loads(box.decrypt(out[29:], out[5:29])) == {"version": 2}


def test_recv_packet_frames_match_vector(derp_vector: dict[str, Any]) -> None:
    seen = 0
    for conn in derp_vector["connections"]:
        for f in conn["frames"]:
            if f["name"] == "RecvPacket":
                src, pkt = bytes.fromhex(f["src_public_hex"]), bytes.fromhex(f["packet_hex"])
                assert frames.recv_packet(src, pkt).hex() == f["frame_hex"]
                assert (frames.recv_packet_header(src, len(pkt)) + pkt).hex() == f["frame_hex"]
                assert frames.is_disco(pkt) == f["packet_kind"].startswith("disco")
                seen += 1
    assert seen >= 4


def test_send_packet_builder_matches_vector(derp_vector: dict[str, Any]) -> None:
    for conn in derp_vector["connections"]:
        for f in conn["frames"]:
            if f["name"] == "SendPacket":
                built = frames.send_packet(bytes.fromhex(f["dst_public_hex"]), bytes.fromhex(f["packet_hex"]))
                assert built.hex() == f["frame_hex"]
            elif f["name"] == "NotePreferred":
                assert frames.note_preferred(f["preferred"] == 1).hex() == f["frame_hex"]


def test_header_roundtrip_and_builders() -> None:
    assert frames.pack_header(FrameType.PING, 8) == b"\x12\x00\x00\x00\x08"
    assert frames.unpack_header(b"xx" + frames.pack_header(5, 70000), 2) == (5, 70000)
    key = bytes(range(32))
    assert frames.peer_gone(key, frames.PeerGoneReason.NOT_HERE) == b"\x08\x00\x00\x00\x21" + key + b"\x01"
    present = frames.peer_present(key, b"\x00" * 10 + b"\xff\xff" + bytes([127, 0, 0, 1]), 443, 1)
    assert present[:5] == b"\x09\x00\x00\x00\x33" and present[-3:] == b"\x01\xbb\x01"
    assert frames.restarting(1000, 2000) == b"\x15\x00\x00\x00\x08" + bytes.fromhex("000003e8000007d0")
    assert frames.keep_alive() == b"\x06\x00\x00\x00\x00"
    with pytest.raises(frames.FrameError):
        frames.send_packet(b"short", b"")


# --- behaviour with an in-memory client --------------------------------------------------------


def _pair(mesh_server: bytes | None = None, mesh_client: bytes | None = None) -> tuple[
    protocol.ServerConnection, protocol.ClientConnection, protocol.ClientInfoReceived
]:
    server = protocol.ServerConnection(os.urandom(32), mesh_key=mesh_server)
    client = protocol.ClientConnection(os.urandom(32), mesh_key=mesh_client, app_name="test")
    ev = client.receive_data(server.data_to_send())
    assert isinstance(ev[0], protocol.ServerKeyReceived) and ev[0].server_key == server.server_public
    events = server.receive_data(client.data_to_send())
    assert isinstance(events[0], protocol.ClientInfoReceived)
    return server, client, events[0]


def test_client_server_handshake_and_packets() -> None:
    server, client, hello = _pair()
    assert hello.client_key == client.public_key and hello.info.app_name == "test"
    assert server.accept(token_bucket_bytes_per_second=1000, token_bucket_bytes_burst=2000) == []
    (info,) = client.receive_data(server.data_to_send())
    assert isinstance(info, protocol.ServerInfoReceived)
    assert info.info == {"version": 2, "TokenBucketBytesPerSecond": 1000, "TokenBucketBytesBurst": 2000}
    dst = os.urandom(32)
    client.send_packet(dst, b"hello")
    client.ping(b"12345678")
    client.note_preferred(True)
    events = server.receive_data(client.data_to_send())
    assert _materialize(events) == [("send", dst, b"hello"), ("PingReceived",), ("preferred", True)]
    (pong,) = client.receive_data(server.data_to_send())
    assert isinstance(pong, protocol.PongReceived) and pong.data == b"12345678"


def test_mesh_frames_need_mesh_key() -> None:
    server, client, hello = _pair(mesh_server=b"k" * 32)
    assert not hello.is_mesh_peer
    server.accept()
    client.watch_conns()
    (closed,) = server.receive_data(client.data_to_send())
    assert isinstance(closed, protocol.ConnectionClosed) and "mesh" in closed.reason
    assert server.is_closed and server.receive_data(frames.ping(b"x" * 8)) == []


def test_mesh_peer_frames() -> None:
    key = os.urandom(32)
    server, client, hello = _pair(mesh_server=key, mesh_client=key)
    assert hello.is_mesh_peer and hello.info.mesh_key == key
    server.accept()
    a, b = os.urandom(32), os.urandom(32)
    client.watch_conns()
    client.close_peer(a)
    client.forward_packet(a, b, b"pkt")
    events = server.receive_data(client.data_to_send())
    assert isinstance(events[0], protocol.WatchConns)
    assert isinstance(events[1], protocol.ClosePeer) and events[1].key == a
    fwd = events[2]
    assert isinstance(fwd, protocol.ForwardPacket) and (fwd.src, fwd.dst, bytes(fwd.packet)) == (a, b, b"pkt")


def test_client_decodes_server_notices() -> None:
    server, client, _ = _pair()
    server.accept()
    client.receive_data(server.data_to_send())
    key = os.urandom(32)
    stream = (
        frames.keep_alive() + frames.peer_gone(key, 1) + frames.frame(FrameType.PEER_GONE, key)
        + frames.peer_present(key, bytes(16), 7, 2) + frames.health("bad") + frames.restarting(1, 2)
        + frames.recv_packet(key, b"data") + frames.frame(0x7F, b"unknown")
    )
    events = client.receive_data(stream)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["KeepAlive", "PeerGone", "PeerGone", "PeerPresent", "Health", "Restarting", "RecvPacket"]
    assert isinstance(events[1], protocol.PeerGone) and events[1].reason == 1
    assert isinstance(events[2], protocol.PeerGone) and events[2].reason == 0
    assert isinstance(events[3], protocol.PeerPresent) and (events[3].port, events[3].flags) == (7, 2)


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (frames.send_packet(bytes(32), b""), "expected ClientInfo"),
        (frames.pack_header(FrameType.CLIENT_INFO, frames.MAX_INFO_LEN + 1), "too large"),
        (frames.frame(FrameType.CLIENT_INFO, bytes(40)), "short ClientInfo"),
        (frames.frame(FrameType.CLIENT_INFO, bytes(32) + bytes(24) + bytes(40)), "bad ClientInfo"),
    ],
)
def test_bad_handshake_closes(stream: bytes, reason: str) -> None:
    server = protocol.ServerConnection(os.urandom(32))
    events = server.receive_data(stream)
    assert len(events) == 1 and isinstance(events[0], protocol.ConnectionClosed)
    assert reason in events[0].reason and server.close_reason == events[0].reason


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (frames.pack_header(FrameType.SEND_PACKET, 32 + frames.MAX_PACKET_SIZE + 1), "too large"),
        (frames.frame(FrameType.SEND_PACKET, b"x" * 31), "short SendPacket"),
        (frames.frame(FrameType.NOTE_PREFERRED, b"\x01\x01"), "1 byte"),
        (frames.frame(FrameType.PING, b"1234"), "short Ping"),
        (frames.frame(FrameType.FORWARD_PACKET, bytes(80)), "mesh key"),
        (frames.pack_header(0x7E, frames.MAX_FRAME_SIZE + 1), "too large"),
    ],
)
def test_bad_frames_close(stream: bytes, reason: str) -> None:
    server, _, _ = _pair()
    server.accept()
    events = server.receive_data(frames.frame(0x7F, b"skipped") + stream)
    assert len(events) == 1 and isinstance(events[0], protocol.ConnectionClosed)
    assert reason in events[0].reason


def test_random_input_never_raises() -> None:
    """Invariant: any byte stream yields events (at most one ConnectionClosed), never an exception."""
    rng = random.Random(1234)
    types = [t.value for t in FrameType] + [0x00, 0x7F, 0xFF]
    for _ in range(300):
        server, client, _ = _pair(mesh_server=b"m" * 32, mesh_client=b"m" * 32)
        server.accept()
        chunks = []
        for _ in range(rng.randrange(1, 8)):
            t = rng.choice(types)
            payload = rng.randbytes(rng.choice([0, 1, 8, 31, 32, 33, 64, 65, 200]))
            junk = rng.randbytes(rng.randrange(1, 9))
            chunks.append(frames.frame(t, payload) if rng.random() < 0.8 else junk)
        data = b"".join(chunks)
        events: list[protocol.Event] = []
        pos = 0
        while pos < len(data):
            step = rng.randrange(1, 40)
            events += server.receive_data(data[pos : pos + step])
            pos += step
        assert sum(isinstance(e, protocol.ConnectionClosed) for e in events) <= 1
        client.receive_data(data)  # the client parser obeys the same invariant


def test_data_buffered_during_verification_is_bounded() -> None:
    server, client, _ = _pair()  # paused after ClientInfo, before accept()
    chunk = frames.send_packet(bytes(32), bytes(60_000))
    events: list[protocol.Event] = []
    for _ in range(protocol.MAX_PENDING_BYTES // len(chunk) + 2):
        events += server.receive_data(chunk)
    assert len(events) == 1 and isinstance(events[0], protocol.ConnectionClosed)
    assert "before the handshake" in events[0].reason and server.is_closed
