"""DERP over WebSocket for browser/js clients (Tailscale `derp/derphttp/websocket.go`): RFC 6455,
subprotocol "derp".

Binary messages carry the DERP frame byte stream (message boundaries mean nothing). `serve_websocket()`
answers the upgrade, then runs `DerpServer.serve_upgraded` on stream adapters: a pump task unwraps client
frames into a StreamReader, and writes are wrapped into unmasked binary frames. The frame codec is sans-IO
and also encodes masked client frames (tests).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import struct
from collections.abc import Iterable
from typing import Any

from .server import DerpServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 1 << 20  # like the DERP frame limit
READ_SIZE = 256 << 10


class WebSocketError(Exception):
    pass


def accept_key(client_key: str) -> str:
    digest = hashlib.sha1((client_key + WS_GUID).encode()).digest()  # noqa: S324 - mandated by RFC 6455
    return base64.b64encode(digest).decode()


def encode_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One FIN frame; `mask` (4 bytes) only for client->server frames."""
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack(">BB", 0x80 | opcode, mask_bit | n)
    elif n < 1 << 16:
        head = struct.pack(">BBH", 0x80 | opcode, mask_bit | 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, mask_bit | 127, n)
    if mask:
        return head + mask + _xor(payload, mask)
    return head + payload


def _xor(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    repeated = (mask * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(data), "big")


class FrameParser:
    """Incremental RFC 6455 frame parser. feed() returns [(opcode, payload)] of complete frames."""

    def __init__(self, *, require_mask: bool) -> None:
        self._buf = bytearray()
        self._require_mask = require_mask

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out: list[tuple[int, bytes]] = []
        while True:
            frame = self._next()
            if frame is None:
                return out
            out.append(frame)

    def _next(self) -> tuple[int, bytes] | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        opcode, masked, n = buf[0] & 0x0F, buf[1] & 0x80, buf[1] & 0x7F
        if buf[0] & 0x70:
            raise WebSocketError("reserved bits set (no extensions negotiated)")
        if self._require_mask and not masked:
            raise WebSocketError("client frame not masked")
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, pos = struct.unpack_from(">H", buf, 2)[0], 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, pos = struct.unpack_from(">Q", buf, 2)[0], 10
        if n > MAX_MESSAGE:
            raise WebSocketError("frame too large")
        mask = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            mask, pos = bytes(buf[pos : pos + 4]), pos + 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos : pos + n])
        del buf[: pos + n]
        return opcode, _xor(payload, mask) if mask else payload


class _WsTransport:
    """What DerpServer needs of a transport, writing binary WebSocket frames on the real one."""

    def __init__(self, raw: asyncio.Transport) -> None:
        self._raw = raw

    def write(self, data: bytes) -> None:
        if data:
            self._raw.write(encode_frame(OP_BINARY, bytes(data)))

    def writelines(self, parts: list[bytes | memoryview]) -> None:
        self.write(b"".join(parts))

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def close(self) -> None:
        if not self._raw.is_closing():
            self._raw.write(encode_frame(OP_CLOSE, struct.pack(">H", 1000)))
        self._raw.close()


class _WsWriter:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.transport = _WsTransport(writer.transport)  # type: ignore[arg-type]

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._writer.get_extra_info(name, default)

    def close(self) -> None:
        self.transport.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


def _header(headers: Iterable[tuple[str, str]], name: str) -> str:
    return next((v for k, v in headers if k.lower() == name), "")


def upgrade_response(headers: Iterable[tuple[str, str]]) -> bytes | None:
    """The 101 for a valid `Upgrade: websocket` request offering subprotocol "derp", else None."""
    headers = list(headers)
    key = _header(headers, "sec-websocket-key").strip()
    protocols = [p.strip() for p in _header(headers, "sec-websocket-protocol").split(",")]
    if not key or "derp" not in protocols:
        return None
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\nSec-WebSocket-Protocol: derp\r\n\r\n"
    ).encode()


async def serve_websocket(
    server: DerpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
    headers: Iterable[tuple[str, str]], *, initial: bytes = b"",
) -> None:
    """Serve one DERP-over-WebSocket connection after its HTTP request head was read."""
    response = upgrade_response(headers)
    if response is None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        writer.close()
        return
    writer.write(response)
    inner = asyncio.StreamReader(limit=READ_SIZE)
    ws_writer = _WsWriter(writer)
    pump = asyncio.get_running_loop().create_task(_pump(reader, inner, ws_writer, initial))
    try:
        await server.serve_upgraded(inner, ws_writer, fast_start=True)  # type: ignore[arg-type]
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump


async def _pump(reader: asyncio.StreamReader, inner: asyncio.StreamReader, ws_writer: _WsWriter,
                initial: bytes) -> None:
    parser = FrameParser(require_mask=True)
    data = initial
    try:
        while True:
            for opcode, payload in parser.feed(data) if data else []:
                if opcode in (OP_BINARY, OP_CONT, OP_TEXT):
                    inner.feed_data(payload)
                elif opcode == OP_PING:
                    ws_writer._writer.transport.write(encode_frame(OP_PONG, payload))
                elif opcode == OP_CLOSE:
                    return
            data = await reader.read(READ_SIZE)
            if not data:
                return
    except (WebSocketError, OSError):
        return
    finally:
        inner.feed_eof()
