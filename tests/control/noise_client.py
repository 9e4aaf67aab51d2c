"""A minimal TS2021 client for in-process tests: noiseprotocol (an independent Noise
implementation) as initiator, pyscale's record layer for transport, h2 as the HTTP/2 client."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from typing import Any

import h2.config
import h2.connection
import h2.events
from noise.connection import Keypair, NoiseConnection

from pyscale.keys import PrivateKey
from pyscale.noise.records import RecordDecoder, RecordEncoder

VERSION = 130


def initiation(server_public: bytes, machine: PrivateKey, version: int = VERSION) -> tuple[bytes, NoiseConnection]:
    nc = NoiseConnection.from_name(b"Noise_IK_25519_ChaChaPoly_BLAKE2s")
    nc.set_as_initiator()
    nc.set_prologue(b"Tailscale Control Protocol v%d" % version)
    nc.set_keypair_from_private_bytes(Keypair.STATIC, machine.raw)
    nc.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, server_public)
    nc.start_handshake()
    payload = nc.write_message()
    return struct.pack(">HBH", version, 1, len(payload)) + payload, nc


def upgrade_request(port: int, init: bytes) -> bytes:
    return (f"POST /ts2021 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: upgrade\r\n"
            f"Upgrade: tailscale-control-protocol\r\nX-Tailscale-Handshake: {base64.b64encode(init).decode()}"
            "\r\n\r\n").encode()


class NoiseClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, c2s: bytes, s2c: bytes) -> None:
        self.reader, self.writer = reader, writer
        self.enc, self.dec = RecordEncoder(c2s), RecordDecoder(s2c)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.plain = bytearray()

    @classmethod
    async def connect(cls, port: int, server_public: bytes, machine: PrivateKey) -> NoiseClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        init, nc = initiation(server_public, machine)
        writer.write(upgrade_request(port, init))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        resp = await reader.readexactly(51)
        assert resp[0] == 2, resp
        nc.read_message(resp[3:])
        proto = nc.noise_protocol
        client = cls(reader, writer, proto.cipher_state_encrypt.k, proto.cipher_state_decrypt.k)
        client.h2.initiate_connection()
        client.flush()
        return client

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.writer.write(self.enc.encrypt(data))

    async def request(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        stream = self.h2.get_next_available_stream_id()
        raw = json.dumps(body).encode()
        self.h2.send_headers(stream, [(":method", "POST"), (":scheme", "https"), (":authority", "x"),
                                      (":path", path), ("content-length", str(len(raw)))])
        self.h2.send_data(stream, raw, end_stream=True)
        self.flush()
        status, out = 0, bytearray()
        while True:
            data = await asyncio.wait_for(self.reader.read(65536), 10)
            if not data:
                raise ConnectionError("server closed the connection")
            for chunk in self.dec.receive_data(data):
                if chunk.startswith(b"\xff\xff\xffTS"):  # early payload: skip magic + length + JSON
                    length = struct.unpack(">I", chunk[5:9])[0]
                    chunk = chunk[9 + length:]
                for ev in self.h2.receive_data(chunk):
                    if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == stream:
                        status = int(dict(ev.headers or [])[":status"])
                    elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == stream:
                        out += ev.data or b""
                        self.h2.acknowledge_received_data(ev.flow_controlled_length or 0, stream)
                    elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == stream:
                        self.flush()
                        return status, bytes(out)
            self.flush()

    def close(self) -> None:
        self.writer.close()
