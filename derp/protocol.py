"""Sans-IO DERP connections: the server side of one client, and a client side for meshing and tests.

Feed received bytes with `receive_data(data)`; it returns events. Bytes to write accumulate and are taken
with `data_to_send()`. No sockets, no clocks: nonces come from an injectable source so tests replay the
byte vectors exactly.

Server handshake (Tailscale `derp/derpserver/derpserver.go`): ServerKey goes out at construction; the
first client frame must be ClientInfo (key + nonce + NaCl box of JSON). Once it opens, the core pauses
with a `ClientInfoReceived` event until the owner calls `accept()` (which sends ServerInfo and resumes
parsing the frames already buffered) or `close()`. A bad frame closes the connection with a reason
(`ConnectionClosed`); after that all input is ignored.

Frame payloads are `memoryview` slices of the received chunk (no copy); consume them before the next
`receive_data` call, or copy with bytes().
"""

from __future__ import annotations

import enum
import hmac
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.utils

from . import frames
from .frames import KEY_LEN, NONCE_LEN, FrameType

NonceSource = Callable[[], bytes]
_CRYPTO_ERRORS = (nacl.exceptions.CryptoError, nacl.exceptions.RuntimeError, ValueError)


def random_nonce() -> bytes:
    return nacl.utils.random(NONCE_LEN)


def public_key_of(private_key: bytes) -> bytes:
    return bytes(nacl.public.PrivateKey(private_key).public_key)


# --- events -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ClientInfo:
    """Decoded ClientInfo JSON (Go field names; Go decodes JSON case-insensitively, so do we)."""

    version: int = 0
    can_ack_pings: bool = False
    is_prober: bool = False
    mesh_key: bytes | None = None
    app_name: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: bytes) -> ClientInfo:
        obj = json.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("ClientInfo JSON is not an object")
        low = {str(k).lower(): v for k, v in obj.items()}
        return cls(
            version=_as_int(low.get("version", 0)),
            can_ack_pings=low.get("canackpings") is True,
            is_prober=low.get("isprober") is True,
            mesh_key=_parse_mesh_key(low.get("meshkey")),
            app_name=str(low.get("appname") or ""),
            raw=obj,
        )


def _as_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _parse_mesh_key(value: object) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.rsplit(":", 1)[-1]  # tolerate a "prefix:" form of the key text
    try:
        key = bytes.fromhex(text)
    except ValueError:
        return None
    return key if len(key) == KEY_LEN else None


@dataclass(slots=True)
class ClientInfoReceived:
    client_key: bytes
    info: ClientInfo
    is_mesh_peer: bool  # presented the configured mesh key


@dataclass(slots=True)
class SendPacket:
    dst: bytes
    packet: memoryview


@dataclass(slots=True)
class ForwardPacket:
    src: bytes
    dst: bytes
    packet: memoryview


@dataclass(slots=True)
class NotePreferred:
    preferred: bool


@dataclass(slots=True)
class PingReceived:
    data: bytes  # a Pong with these bytes has already been queued


@dataclass(slots=True)
class PongReceived:
    data: bytes


@dataclass(slots=True)
class WatchConns:
    pass


@dataclass(slots=True)
class ClosePeer:
    key: bytes


@dataclass(slots=True)
class ConnectionClosed:
    reason: str


# client-side events


@dataclass(slots=True)
class ServerKeyReceived:
    server_key: bytes


@dataclass(slots=True)
class ServerInfoReceived:
    info: dict[str, Any]


@dataclass(slots=True)
class RecvPacket:
    src: bytes
    packet: memoryview


@dataclass(slots=True)
class KeepAlive:
    pass


@dataclass(slots=True)
class PeerGone:
    key: bytes
    reason: int


@dataclass(slots=True)
class PeerPresent:
    key: bytes
    ip16: bytes
    port: int
    flags: int


@dataclass(slots=True)
class Health:
    problem: str


@dataclass(slots=True)
class Restarting:
    reconnect_in_ms: int
    try_for_ms: int


Event = (
    ClientInfoReceived | SendPacket | ForwardPacket | NotePreferred | PingReceived | PongReceived
    | WatchConns | ClosePeer | ConnectionClosed | ServerKeyReceived | ServerInfoReceived | RecvPacket
    | KeepAlive | PeerGone | PeerPresent | Health | Restarting
)


PacketSpan = tuple[int, int]
Item = PacketSpan | Event
_HEADER_UNPACK = struct.Struct(">BI").unpack_from
_MAX_SEND = frames.MAX_PAYLOAD[FrameType.SEND_PACKET]


class ProtocolError(Exception):
    """Raised inside the cores; turned into ConnectionClosed(reason) before it reaches the caller."""


# --- shared framing ---------------------------------------------------------------------------


class _FrameBuffer:
    """Incremental frame splitter. Holds only an incomplete tail between calls."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def frames(self, data: bytes) -> tuple[bytes, list[tuple[int, int, int]]]:
        """Append data; return (buffer, [(type, start, end)]) of every complete frame in it.

        Length limits are checked on the header, before the payload is waited for.
        """
        buf = self._tail + data if self._tail else bytes(data)
        out: list[tuple[int, int, int]] = []
        pos, size = 0, len(buf)
        unpack = frames.unpack_header
        while size - pos >= frames.FRAME_HEADER_LEN:
            frame_type, length = unpack(buf, pos)
            if length > frames.max_payload(frame_type):
                self._tail = b""
                raise ProtocolError(f"frame type {frame_type:#x} too large ({length} bytes)")
            end = pos + frames.FRAME_HEADER_LEN + length
            if end > size:
                break
            out.append((frame_type, pos + frames.FRAME_HEADER_LEN, end))
            pos = end
        self._tail = buf[pos:] if pos < size else b""
        return buf, out

    @property
    def tail(self) -> bytes:
        return self._tail


class _State(enum.Enum):
    AWAIT_CLIENT_INFO = "await-client-info"
    PENDING = "pending"  # ClientInfo opened; waiting for accept()/close()
    OPEN = "open"
    CLOSED = "closed"


# --- server side ------------------------------------------------------------------------------


class ServerConnection:
    """Server side of one DERP client connection."""

    def __init__(
        self,
        private_key: bytes,
        *,
        mesh_key: bytes | None = None,
        nonce_source: NonceSource = random_nonce,
        public_key: bytes | None = None,
    ) -> None:
        self._private = nacl.public.PrivateKey(private_key)
        self.server_public = public_key if public_key is not None else bytes(self._private.public_key)
        self._mesh_key = mesh_key
        self._nonce = nonce_source
        self._buffer = _FrameBuffer()
        self._out = bytearray(frames.server_key(self.server_public))
        self._state = _State.AWAIT_CLIENT_INFO
        self._box: nacl.public.Box | None = None
        self._pending_rest = b""
        self.client_key: bytes | None = None
        self.client_info: ClientInfo | None = None
        self.is_mesh_peer = False
        self.close_reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self._state is _State.OPEN

    @property
    def is_closed(self) -> bool:
        return self._state is _State.CLOSED

    def _is_pending(self) -> bool:
        return self._state is _State.PENDING

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        if self._state is _State.OPEN:
            buf, items = self.receive_items(data)
            mv = memoryview(buf)
            return [SendPacket(buf[i[0] : i[0] + KEY_LEN], mv[i[0] + KEY_LEN : i[1]]) if type(i) is tuple
                    else i for i in items]  # type: ignore[misc]
        if self._state is _State.CLOSED:
            return []
        if self._state is _State.PENDING:
            self._pending_rest += data
            return []
        events: list[Event] = []
        try:
            buf, found = self._buffer.frames(data)
            for frame_type, start, end in found:
                self._handle(frame_type, buf, start, end, events)
                if self._is_pending():
                    # Frames after ClientInfo wait, unparsed, until accept() (the owner may verify first).
                    self._pending_rest = buf[end:]
                    self._buffer = _FrameBuffer()
                    break
        except ProtocolError as exc:
            events.append(self._fail(str(exc)))
        return events

    def receive_items(self, data: bytes) -> tuple[bytes, list[Item]]:
        """Hot-path form of `receive_data` for an open connection.

        Returns (buf, items) in wire order: a SendPacket is a `(start, end)` span in `buf` (destination key
        `buf[start:start+32]`, packet `buf[start+32:end]`), every other frame an Event. No per-packet objects
        beyond the span tuple, so the relay can route straight from the receive buffer.
        """
        if self._state is not _State.OPEN:
            return b"", list(self.receive_data(data))
        tail = self._buffer._tail
        buf = tail + data if tail else data
        items: list[Item] = []
        pos, size = 0, len(buf)
        unpack = _HEADER_UNPACK
        try:
            while size - pos >= 5:
                frame_type, length = unpack(buf, pos)
                start = pos + 5
                end = start + length
                if frame_type == 4:  # SendPacket
                    if length > _MAX_SEND:
                        raise ProtocolError(f"frame type 0x4 too large ({length} bytes)")
                    if end > size:
                        break
                    if length < KEY_LEN:
                        raise ProtocolError("short SendPacket")
                    items.append((start, end))
                else:
                    if length > frames.max_payload(frame_type):
                        raise ProtocolError(f"frame type {frame_type:#x} too large ({length} bytes)")
                    if end > size:
                        break
                    self._handle(frame_type, buf, start, end, items)  # type: ignore[arg-type]
                pos = end
        except ProtocolError as exc:
            self._buffer._tail = b""
            items.append(self._fail(str(exc)))
            return buf, items
        self._buffer._tail = buf[pos:] if pos < size else b""
        return buf, items

    def accept(
        self, *, token_bucket_bytes_per_second: int = 0, token_bucket_bytes_burst: int = 0
    ) -> list[Event]:
        """Admit the client: queue ServerInfo and process frames that arrived after ClientInfo."""
        if self._state is not _State.PENDING or self._box is None:
            raise RuntimeError("accept() is only valid after ClientInfoReceived")
        info: dict[str, int] = {"version": frames.PROTOCOL_VERSION}
        if token_bucket_bytes_per_second:
            info["TokenBucketBytesPerSecond"] = token_bucket_bytes_per_second
            info["TokenBucketBytesBurst"] = token_bucket_bytes_burst
        plaintext = json.dumps(info, separators=(",", ":")).encode()
        self._out += server_info_frame(self._box, plaintext, self._nonce())
        self._state = _State.OPEN
        rest, self._pending_rest = self._pending_rest, b""
        return self.receive_data(rest)

    def close(self, reason: str) -> ConnectionClosed:
        return self._fail(reason)

    def _fail(self, reason: str) -> ConnectionClosed:
        if self._state is not _State.CLOSED:
            self._state = _State.CLOSED
            self.close_reason = reason
        return ConnectionClosed(self.close_reason or reason)

    # frame handlers

    def _handle(self, frame_type: int, buf: bytes, start: int, end: int, events: list[Event]) -> None:
        if self._state is _State.AWAIT_CLIENT_INFO:
            if frame_type != FrameType.CLIENT_INFO:
                raise ProtocolError(f"first frame is type {frame_type:#x}, expected ClientInfo")
            events.append(self._client_info(bytes(buf[start:end])))
            return
        length = end - start
        if frame_type == FrameType.NOTE_PREFERRED:
            if length != 1:
                raise ProtocolError("NotePreferred payload must be 1 byte")
            events.append(NotePreferred(buf[start] != 0))
        elif frame_type == FrameType.PING:
            if length < frames.PING_DATA_LEN:
                raise ProtocolError("short Ping")
            data = buf[start : start + frames.PING_DATA_LEN]
            self._out += frames.pong(data)
            events.append(PingReceived(data))
        elif frame_type == FrameType.PONG:
            events.append(PongReceived(buf[start : start + frames.PING_DATA_LEN]))
        else:
            self._handle_mesh(frame_type, buf, start, end, events)

    def _handle_mesh(self, frame_type: int, buf: bytes, start: int, end: int, events: list[Event]) -> None:
        if frame_type not in (FrameType.FORWARD_PACKET, FrameType.WATCH_CONNS, FrameType.CLOSE_PEER):
            return  # unknown or client-irrelevant types are skipped, like the Go server
        if not self.is_mesh_peer:
            raise ProtocolError(f"frame type {frame_type:#x} needs the mesh key")
        length = end - start
        if frame_type == FrameType.WATCH_CONNS:
            events.append(WatchConns())
        elif frame_type == FrameType.CLOSE_PEER:
            if length != KEY_LEN:
                raise ProtocolError("ClosePeer payload must be 32 bytes")
            events.append(ClosePeer(buf[start:end]))
        else:
            if length < 2 * KEY_LEN:
                raise ProtocolError("short ForwardPacket")
            src, dst = buf[start : start + KEY_LEN], buf[start + KEY_LEN : start + 2 * KEY_LEN]
            events.append(ForwardPacket(src, dst, memoryview(buf)[start + 2 * KEY_LEN : end]))

    def _client_info(self, payload: bytes) -> ClientInfoReceived:
        if len(payload) < frames.MIN_CLIENT_INFO_LEN:
            raise ProtocolError("short ClientInfo")
        client_key = payload[:KEY_LEN]
        nonce = payload[KEY_LEN : KEY_LEN + NONCE_LEN]
        try:
            # A low-order client key makes libsodium fail in Box(); that is a bad handshake too.
            box = nacl.public.Box(self._private, nacl.public.PublicKey(client_key))
            plaintext = box.decrypt(payload[KEY_LEN + NONCE_LEN :], nonce)
            info = ClientInfo.from_json(plaintext)
        except _CRYPTO_ERRORS as exc:
            raise ProtocolError(f"bad ClientInfo: {exc.__class__.__name__}") from None
        self._box = box
        self.client_key = client_key
        self.client_info = info
        self.is_mesh_peer = bool(
            self._mesh_key is not None and info.mesh_key is not None
            and hmac.compare_digest(self._mesh_key, info.mesh_key)
        )
        self._state = _State.PENDING
        return ClientInfoReceived(client_key, info, self.is_mesh_peer)


def server_info_frame(box: nacl.public.Box, plaintext: bytes, nonce: bytes) -> bytes:
    """ServerInfo frame: nonce + box(JSON) sealed with (server private, client public)."""
    sealed = box.encrypt(plaintext, nonce).ciphertext
    return frames.server_info(nonce, sealed)


# --- client side (mesh links, tests, benchmarks) ----------------------------------------------


class ClientConnection:
    """Client side of a DERP connection: answers ServerKey with ClientInfo, decodes server frames."""

    def __init__(
        self,
        private_key: bytes,
        *,
        mesh_key: bytes | None = None,
        can_ack_pings: bool = True,
        app_name: str = "",
        nonce_source: NonceSource = random_nonce,
        expected_server_key: bytes | None = None,
    ) -> None:
        self._private = nacl.public.PrivateKey(private_key)
        self.public_key = bytes(self._private.public_key)
        self._mesh_key = mesh_key
        self._can_ack_pings = can_ack_pings
        self._app_name = app_name
        self._nonce = nonce_source
        self._expected_server_key = expected_server_key
        self._buffer = _FrameBuffer()
        self._out = bytearray()
        self._box: nacl.public.Box | None = None
        self.server_key: bytes | None = None
        self.closed_reason: str | None = None

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        if self.closed_reason is not None:
            return []
        events: list[Event] = []
        try:
            buf, found = self._buffer.frames(data)
            for frame_type, start, end in found:
                self._handle(frame_type, buf, start, end, events)
        except ProtocolError as exc:
            self.closed_reason = str(exc)
            events.append(ConnectionClosed(self.closed_reason))
        return events

    def pending_bytes(self) -> bytes:
        """Received bytes not yet forming a complete frame."""
        return self._buffer.tail

    def _client_info_json(self) -> bytes:
        info: dict[str, Any] = {"version": frames.PROTOCOL_VERSION, "CanAckPings": self._can_ack_pings}
        if self._mesh_key is not None:
            info["meshKey"] = self._mesh_key.hex()
        if self._app_name:
            info["AppName"] = self._app_name
        return json.dumps(info, separators=(",", ":")).encode()

    def _handle(self, frame_type: int, buf: bytes, start: int, end: int, events: list[Event]) -> None:
        payload = memoryview(buf)[start:end]
        if self.server_key is None:
            events.append(self._server_key(frame_type, bytes(payload)))
        elif frame_type == FrameType.RECV_PACKET:
            if len(payload) < KEY_LEN:
                raise ProtocolError("short RecvPacket")
            events.append(RecvPacket(buf[start : start + KEY_LEN], payload[KEY_LEN:]))
        elif frame_type == FrameType.SERVER_INFO:
            events.append(self._server_info(bytes(payload)))
        elif frame_type == FrameType.KEEP_ALIVE:
            events.append(KeepAlive())
        elif frame_type == FrameType.PING:
            data = bytes(payload[: frames.PING_DATA_LEN])
            if self._can_ack_pings:
                self._out += frames.pong(data)
            events.append(PingReceived(data))
        elif frame_type == FrameType.PONG:
            events.append(PongReceived(bytes(payload[: frames.PING_DATA_LEN])))
        else:
            self._handle_notice(frame_type, bytes(payload), events)

    def _handle_notice(self, frame_type: int, payload: bytes, events: list[Event]) -> None:
        if frame_type == FrameType.PEER_GONE and len(payload) >= KEY_LEN:
            reason = payload[KEY_LEN] if len(payload) > KEY_LEN else frames.PeerGoneReason.DISCONNECTED
            events.append(PeerGone(payload[:KEY_LEN], reason))
        elif frame_type == FrameType.PEER_PRESENT and len(payload) >= KEY_LEN:
            ip16 = payload[KEY_LEN : KEY_LEN + 16].ljust(16, b"\x00")
            port = int.from_bytes(payload[KEY_LEN + 16 : KEY_LEN + 18] or b"\x00\x00", "big")
            flags = payload[KEY_LEN + 18] if len(payload) > KEY_LEN + 18 else 0
            events.append(PeerPresent(payload[:KEY_LEN], ip16, port, flags))
        elif frame_type == FrameType.HEALTH:
            events.append(Health(payload.decode("utf-8", "replace")))
        elif frame_type == FrameType.RESTARTING and len(payload) >= 8:
            events.append(Restarting(int.from_bytes(payload[:4], "big"), int.from_bytes(payload[4:8], "big")))

    def _server_key(self, frame_type: int, payload: bytes) -> ServerKeyReceived:
        if frame_type != FrameType.SERVER_KEY or len(payload) < frames.MIN_SERVER_KEY_LEN:
            raise ProtocolError("expected ServerKey frame")
        if payload[: len(frames.MAGIC)] != frames.MAGIC:
            raise ProtocolError("bad DERP magic")
        key = payload[len(frames.MAGIC) : frames.MIN_SERVER_KEY_LEN]
        if self._expected_server_key is not None and key != self._expected_server_key:
            raise ProtocolError("unexpected server key")
        self.server_key = key
        try:
            self._box = nacl.public.Box(self._private, nacl.public.PublicKey(key))
        except _CRYPTO_ERRORS:
            raise ProtocolError("unusable server key") from None
        nonce = self._nonce()
        sealed = self._box.encrypt(self._client_info_json(), nonce).ciphertext
        self._out += frames.client_info(self.public_key, nonce, sealed)
        return ServerKeyReceived(key)

    def _server_info(self, payload: bytes) -> ServerInfoReceived:
        if self._box is None or len(payload) < NONCE_LEN:
            raise ProtocolError("bad ServerInfo")
        try:
            obj = json.loads(self._box.decrypt(payload[NONCE_LEN:], payload[:NONCE_LEN]))
        except _CRYPTO_ERRORS:
            raise ProtocolError("ServerInfo does not open") from None
        return ServerInfoReceived(obj if isinstance(obj, dict) else {})

    # outgoing frames

    def send_packet(self, dst: bytes, packet: bytes) -> None:
        self._out += frames.send_packet(dst, packet)

    def forward_packet(self, src: bytes, dst: bytes, packet: bytes) -> None:
        self._out += frames.forward_packet(src, dst, packet)

    def note_preferred(self, preferred: bool) -> None:
        self._out += frames.note_preferred(preferred)

    def watch_conns(self) -> None:
        self._out += frames.watch_conns()

    def close_peer(self, key: bytes) -> None:
        self._out += frames.close_peer(key)

    def ping(self, data: bytes) -> None:
        self._out += frames.ping(data)
