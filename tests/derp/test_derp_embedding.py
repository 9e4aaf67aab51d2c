"""The embedding contract pyscale relies on: an h11-parsed `GET /derp` whose trailing bytes (here: the real
tailcat ClientInfo + NotePreferred + SendPacket from the vector, sent in the same write as the request) are
handed to `DerpServer.serve_upgraded(initial=...)`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
import nacl.public
import pytest
from relay_helpers import eventually

from derp import http as derp_http
from derp.server import DerpServer


@pytest.mark.asyncio
async def test_h11_handover_with_trailing_bytes(derp_vector: dict[str, Any]) -> None:
    keys = derp_vector["server_keys"]
    server = DerpServer(bytes.fromhex(keys["private_hex"]))
    conn_vec = derp_vector["connections"][1]  # ClientInfo, NotePreferred, then a SendPacket
    c2s = b"".join(bytes.fromhex(f["frame_hex"]) for f in conn_vec["frames"] if f["dir"] == "c2s")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        h = h11.Connection(h11.SERVER)
        while True:
            h.receive_data(await reader.read(65536))
            event = h.next_event()
            if isinstance(event, h11.Request):
                break
        assert event.target == b"/derp" and derp_http.upgrade_kind(event.headers) == "derp"
        trailing, _ = h.trailing_data
        await server.serve_upgraded(reader, writer, initial=bytes(trailing),
                                    fast_start=derp_http.is_fast_start(event.headers))

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(conn_vec["upgrade_request_raw_text"].encode() + c2s)  # one write: head + DERP frames
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.decode() == conn_vec["server_response_raw_text"]
        server_key = await asyncio.wait_for(reader.readexactly(45), 10)
        assert server_key.hex() == conn_vec["frames"][0]["frame_hex"]
        info_head = await asyncio.wait_for(reader.readexactly(5), 10)
        assert info_head[0] == 0x03
        payload = await asyncio.wait_for(reader.readexactly(int.from_bytes(info_head[1:], "big")), 10)
        box = nacl.public.Box(nacl.public.PrivateKey(bytes.fromhex(keys["private_hex"])),
                              nacl.public.PublicKey(bytes.fromhex(conn_vec["client_public_hex"])))
        assert json.loads(box.decrypt(payload[24:], payload[:24])) == {"version": 2}
        # NotePreferred took effect; the SendPacket's destination is not connected here
        await eventually(lambda: server.stats()["home_connections_current"] == 1
                         and server.stats().get("packets_dropped_unknown_dest_total") == 1)
        writer.close()
        await eventually(lambda: server.stats()["connections_current"] == 0)
    finally:
        listener.close()
        await server.close()
        await listener.wait_closed()
