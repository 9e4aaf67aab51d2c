"""DERP over WebSocket: RFC 6455 examples and an end-to-end relay between a WS client and a plain client."""

from __future__ import annotations

import asyncio
import os

import pytest
from relay_helpers import running_relay

from derp import protocol, websocket
from derp.client import DerpClient


def test_rfc6455_examples() -> None:
    assert websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    # RFC 6455 section 5.7: a masked "Hello" text frame and the unmasked one
    masked = bytes.fromhex("818537fa213d7f9f4d5158")
    assert websocket.encode_frame(websocket.OP_TEXT, b"Hello", bytes.fromhex("37fa213d")) == masked
    assert websocket.encode_frame(websocket.OP_TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")
    parser = websocket.FrameParser(require_mask=True)
    assert [f for b in masked for f in parser.feed(bytes([b]))] == [(websocket.OP_TEXT, b"Hello")]
    big = os.urandom(70000)
    assert websocket.FrameParser(require_mask=False).feed(websocket.encode_frame(2, big)) == [(2, big)]
    with pytest.raises(websocket.WebSocketError):
        websocket.FrameParser(require_mask=True).feed(bytes.fromhex("810548656c6c6f"))


async def _ws_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /derp HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Protocol: derp\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101") and b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    assert b"Sec-WebSocket-Protocol: derp" in head
    return reader, writer


@pytest.mark.asyncio
async def test_websocket_client_relays_to_plain_client() -> None:
    async with running_relay() as relay:
        reader, writer = await _ws_connect(relay.port)
        ws = protocol.ClientConnection(os.urandom(32))
        parser = websocket.FrameParser(require_mask=False)
        mask = os.urandom(4)
        plain = await DerpClient.connect(relay.url, os.urandom(32))

        async def ws_events() -> list[protocol.Event]:
            data = await asyncio.wait_for(reader.read(65536), 10)
            assert data
            events: list[protocol.Event] = []
            for opcode, payload in parser.feed(data):
                assert opcode == websocket.OP_BINARY
                events += ws.receive_data(payload)
            out = ws.data_to_send()
            if out:
                writer.write(websocket.encode_frame(websocket.OP_BINARY, out, mask))
            return events

        handshake: list[protocol.Event] = []
        while not any(isinstance(e, protocol.ServerInfoReceived) for e in handshake):
            handshake += await ws_events()
        ws.send_packet(plain.public_key, b"from the browser")
        writer.write(websocket.encode_frame(websocket.OP_BINARY, ws.data_to_send(), mask))
        got = await plain.recv_packet()
        assert (got.src, bytes(got.packet)) == (ws.public_key, b"from the browser")
        plain.send(ws.public_key, b"to the browser")
        received: list[protocol.Event] = []
        while not any(isinstance(e, protocol.RecvPacket) for e in received):
            received += await ws_events()
        packet = next(e for e in received if isinstance(e, protocol.RecvPacket))
        assert bytes(packet.packet) == b"to the browser"
        writer.write(websocket.encode_frame(websocket.OP_CLOSE, b"\x03\xe8", mask))
        await asyncio.wait_for(reader.read(), 10)  # server closes after a close frame
        writer.close()
        await plain.close()
