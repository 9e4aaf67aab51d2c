"""DERP frame layout: types, limits, header pack/unpack and frame builders.

Every frame is 1 byte type + 4-byte big-endian payload length + payload (Tailscale `derp/derp.go`).
Builders return complete frames as bytes; the relay's hot path uses `recv_packet_header` so it can
write the header and the packet bytes without concatenating them first.
"""

from __future__ import annotations

import enum
import struct

PROTOCOL_VERSION = 2
# "DERP" + U+1F511 (key emoji), the first bytes of the ServerKey payload (derp.go `Magic`).
MAGIC = b"DERP\xf0\x9f\x94\x91"
KEY_LEN = 32
NONCE_LEN = 24
BOX_OVERHEAD = 16  # Poly1305 tag in front of a NaCl box ciphertext
FRAME_HEADER_LEN = 5

MAX_PACKET_SIZE = 64 << 10  # data packet carried by Send/Recv/ForwardPacket (derp.go MaxPacketSize)
MAX_INFO_LEN = 256 << 10  # ClientInfo frame (derp_server.go)
MAX_FRAME_SIZE = 1 << 20  # the Go client rejects anything larger; we never accept more either
MAX_SERVER_KEY_LEN = 1 << 10
MAX_PING_LEN = 1000  # only the first 8 bytes are echoed
PING_DATA_LEN = 8
MIN_CLIENT_INFO_LEN = KEY_LEN + NONCE_LEN  # derp_server.go; a shorter box then fails to open
MIN_SERVER_KEY_LEN = len(MAGIC) + KEY_LEN

# Disco packets start with "TS" + U+1F4AC and carry a 32-byte sender key + 24-byte nonce (disco/disco.go).
DISCO_MAGIC = b"TS\xf0\x9f\x92\xac"
DISCO_MIN_LEN = len(DISCO_MAGIC) + KEY_LEN + NONCE_LEN  # 62

_HEADER = struct.Struct(">BI")


class FrameType(enum.IntEnum):
    SERVER_KEY = 0x01
    CLIENT_INFO = 0x02
    SERVER_INFO = 0x03
    SEND_PACKET = 0x04
    RECV_PACKET = 0x05
    KEEP_ALIVE = 0x06
    NOTE_PREFERRED = 0x07
    PEER_GONE = 0x08
    PEER_PRESENT = 0x09
    FORWARD_PACKET = 0x0A
    WATCH_CONNS = 0x10
    CLOSE_PEER = 0x11
    PING = 0x12
    PONG = 0x13
    HEALTH = 0x14
    RESTARTING = 0x15


class PeerGoneReason(enum.IntEnum):
    DISCONNECTED = 0x00
    NOT_HERE = 0x01


class PeerPresentFlags(enum.IntFlag):
    REGULAR = 0x01
    MESH_PEER = 0x02
    PROBER = 0x04
    NOT_IDEAL = 0x08


# Upper bound of the payload length per frame type; anything larger closes the connection.
MAX_PAYLOAD: dict[int, int] = {
    FrameType.SERVER_KEY: MAX_SERVER_KEY_LEN,
    FrameType.CLIENT_INFO: MAX_INFO_LEN,
    FrameType.SERVER_INFO: MAX_INFO_LEN,
    FrameType.SEND_PACKET: KEY_LEN + MAX_PACKET_SIZE,
    FrameType.RECV_PACKET: KEY_LEN + MAX_PACKET_SIZE,
    FrameType.FORWARD_PACKET: 2 * KEY_LEN + MAX_PACKET_SIZE,
    FrameType.PING: MAX_PING_LEN,
    FrameType.PONG: MAX_PING_LEN,
}


class FrameError(ValueError):
    """A frame that violates the DERP framing or a per-type limit."""


def pack_header(frame_type: int, length: int) -> bytes:
    return _HEADER.pack(frame_type, length)


def unpack_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """(type, payload length) of the header at `offset`; the caller checks there are 5 bytes."""
    frame_type, length = _HEADER.unpack_from(buf, offset)
    return frame_type, length


def max_payload(frame_type: int) -> int:
    return MAX_PAYLOAD.get(frame_type, MAX_FRAME_SIZE)


def frame(frame_type: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(frame_type, len(payload)) + payload


def is_disco(packet: bytes | memoryview) -> bool:
    return len(packet) >= DISCO_MIN_LEN and packet[: len(DISCO_MAGIC)] == DISCO_MAGIC


def _key(key: bytes) -> bytes:
    if len(key) != KEY_LEN:
        raise FrameError(f"key must be {KEY_LEN} bytes, got {len(key)}")
    return key


# --- server -> client -------------------------------------------------------------------------


def server_key(public_key: bytes) -> bytes:
    return frame(FrameType.SERVER_KEY, MAGIC + _key(public_key))


def server_info(nonce: bytes, sealed: bytes) -> bytes:
    return frame(FrameType.SERVER_INFO, nonce + sealed)


def recv_packet_header(src: bytes, packet_len: int) -> bytes:
    """Header + source key of a RecvPacket; the packet bytes follow it on the wire."""
    return _HEADER.pack(FrameType.RECV_PACKET, KEY_LEN + packet_len) + src


def recv_packet(src: bytes, packet: bytes) -> bytes:
    return recv_packet_header(_key(src), len(packet)) + packet


def keep_alive() -> bytes:
    return frame(FrameType.KEEP_ALIVE)


def peer_gone(key: bytes, reason: int = PeerGoneReason.DISCONNECTED) -> bytes:
    return frame(FrameType.PEER_GONE, _key(key) + bytes([reason]))


def peer_present(key: bytes, ip16: bytes = bytes(16), port: int = 0, flags: int = 0) -> bytes:
    """PeerPresent: key + 16-byte IP (IPv4 as v4-mapped) + port (BE) + flags."""
    if len(ip16) != 16:
        raise FrameError("peer_present address must be 16 bytes")
    return frame(FrameType.PEER_PRESENT, _key(key) + ip16 + struct.pack(">HB", port, flags))


def ping(data: bytes) -> bytes:
    return frame(FrameType.PING, data)


def pong(data: bytes) -> bytes:
    return frame(FrameType.PONG, data)


def health(problem: str) -> bytes:
    return frame(FrameType.HEALTH, problem.encode())


def restarting(reconnect_in_ms: int, try_for_ms: int) -> bytes:
    return frame(FrameType.RESTARTING, struct.pack(">II", reconnect_in_ms, try_for_ms))


# --- client -> server -------------------------------------------------------------------------


def client_info(client_public: bytes, nonce: bytes, sealed: bytes) -> bytes:
    return frame(FrameType.CLIENT_INFO, _key(client_public) + nonce + sealed)


def send_packet(dst: bytes, packet: bytes) -> bytes:
    return frame(FrameType.SEND_PACKET, _key(dst) + packet)


def forward_packet(src: bytes, dst: bytes, packet: bytes) -> bytes:
    return frame(FrameType.FORWARD_PACKET, _key(src) + _key(dst) + packet)


def forward_packet_header(src: bytes, dst: bytes, packet_len: int) -> bytes:
    return _HEADER.pack(FrameType.FORWARD_PACKET, 2 * KEY_LEN + packet_len) + src + dst


def note_preferred(preferred: bool) -> bytes:
    return frame(FrameType.NOTE_PREFERRED, b"\x01" if preferred else b"\x00")


def watch_conns() -> bytes:
    return frame(FrameType.WATCH_CONNS)


def close_peer(key: bytes) -> bytes:
    return frame(FrameType.CLOSE_PEER, _key(key))
