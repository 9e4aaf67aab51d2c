"""Per-connection state and limits of the relay, plus small helpers shared by `derp.server`."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from dataclasses import dataclass

from . import frames, protocol
from .frames import PeerPresentFlags


@dataclass(frozen=True)
class Limits:
    """Named limits; times in seconds, sizes in bytes. 0 disables an optional limit."""

    max_connections: int = 10_000
    accept_per_second: float = 0.0  # new connections/s, token bucket (derper --accept-connection-limit)
    accept_burst: int = 0  # bucket size (derper --accept-connection-burst); 0 = the rate rounded up
    send_queue_bytes: int = 1 << 20  # per destination connection, data packets
    disco_queue_bytes: int = 256 << 10  # extra room reserved for disco packets
    handshake_timeout: float = 10.0  # ServerKey..ClientInfo (derpserver.go)
    verify_timeout: float = 10.0
    keepalive_interval: float = 60.0  # + up to keepalive_jitter (derpserver.go keepAlive)
    keepalive_jitter: float = 5.0
    idle_timeout: float = 0.0  # close a client that acks pings but sent nothing for this long
    write_timeout: float = 10.0  # queue over the limit this long -> disconnect
    rate_bytes_per_second: int = 0  # per client, told to it in ServerInfo and enforced on SendPacket
    rate_burst_bytes: int = 0
    read_size: int = 256 << 10
    peer_gone_per_second: float = 1.0  # "not here" notices per client (derpserver.go: 1/s, burst 3)
    peer_gone_burst: int = 3
    housekeeping_interval: float = 1.0


class ClientConn:
    """One accepted connection (the registry may hold several per key)."""

    __slots__ = (
        "key", "conn", "writer", "transport", "pending", "pending_bytes", "sent_to", "preferred", "mesh_peer",
        "can_ack_pings", "last_read", "over_since", "next_keepalive", "gone_tokens", "gone_stamp", "tokens",
        "token_stamp", "peer_addr", "closing", "flags", "overflowed", "batch", "base_queued", "headers",
        "taken_over",
    )

    def __init__(self, conn: protocol.ServerConnection, writer: asyncio.StreamWriter, now: float) -> None:
        self.key = b""
        self.conn = conn
        self.writer = writer
        self.transport = writer.transport
        self.pending: list[bytes | memoryview] = []
        self.pending_bytes = 0
        self.sent_to: set[bytes] = set()
        self.preferred = False
        self.mesh_peer = False
        self.can_ack_pings = False
        self.last_read = now
        self.over_since = 0.0
        self.next_keepalive = now
        self.gone_tokens = 0.0
        self.gone_stamp = now
        self.tokens = 0.0
        self.token_stamp = now
        self.peer_addr: tuple[str, int] = ("", 0)
        self.closing = ""
        self.flags = 0
        self.overflowed = False  # a packet to it was dropped for a full queue since the last tick
        self.batch = -1  # the relay's batch number when this client's queue size was last sampled
        self.base_queued = 0  # transport buffer size sampled at that moment
        self.headers: dict[int, bytes] = {}  # RecvPacket header (with this client as source) by packet size
        self.taken_over = False  # the transport feeds a _RelayProtocol instead of the StreamReader

    def queued(self) -> int:
        return self.transport.get_write_buffer_size() + self.pending_bytes


def can_take_over(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """A real StreamReader/transport pair (not an adapter such as the WebSocket one)."""
    return (type(reader) is asyncio.StreamReader and isinstance(getattr(reader, "_buffer", None), bytearray)
            and hasattr(writer.transport, "set_protocol") and hasattr(writer.transport, "resume_reading"))


def present_flags(hello: protocol.ClientInfoReceived) -> int:
    if hello.is_mesh_peer:
        return PeerPresentFlags.MESH_PEER
    return PeerPresentFlags.PROBER if hello.info.is_prober else PeerPresentFlags.REGULAR


def present_frame(key: bytes, client: ClientConn) -> bytes:
    host, port = client.peer_addr
    return frames.peer_present(key, ip16(host), port, client.flags)


def ip16(host: str) -> bytes:
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return bytes(16)
    if isinstance(addr, ipaddress.IPv4Address):
        return b"\x00" * 10 + b"\xff\xff" + addr.packed
    return addr.packed


def reason_label(reason: str) -> str:
    """Collapse a protocol error text into a short metric label."""
    for needle, label in (("too large", "frame_too_large"), ("mesh key", "mesh_required"),
                          ("ClientInfo", "bad_client_info"), ("short", "short_frame")):
        if needle in reason:
            return label
    return "protocol_error"


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(writer.wait_closed(), 2.0)
