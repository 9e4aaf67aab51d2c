"""A small asyncio DERP client over HTTP upgrade, for tests, benchmarks and tooling.

    client = await DerpClient.connect("http://127.0.0.1:3340/derp", private_key)
    client.send(dst_key, b"packet"); await client.drain()
    event = await client.recv()      # protocol.RecvPacket / PeerGone / KeepAlive / ...

Received RecvPacket payloads are copied to bytes before they are queued, so events stay valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.parse
from collections import deque

from . import frames, protocol

READ_SIZE = 256 << 10


class DerpClientError(Exception):
    pass


class DerpClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conn: protocol.ClientConnection) -> None:
        self._reader = reader
        self._writer = writer
        self._conn = conn
        self._events: deque[protocol.Event] = deque()
        self.server_info: dict[str, object] | None = None
        self.server_key: bytes | None = None

    @property
    def public_key(self) -> bytes:
        return self._conn.public_key

    def detach(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        """Hand the raw streams to a caller that frames bytes itself (benchmarks). Returns (reader, writer,
        bytes already received but not yet parsed); do not use the client's other methods afterwards."""
        return self._reader, self._writer, self._conn.pending_bytes()

    @classmethod
    async def connect(
        cls, url: str, private_key: bytes, *, mesh_key: bytes | None = None, fast_start: bool = False,
        ssl_context: ssl.SSLContext | None = None, timeout: float = 10.0, app_name: str = "",
        extra_headers: dict[str, str] | None = None,
    ) -> DerpClient:
        """Dial, upgrade, and complete the handshake (until ServerInfo arrives)."""
        parts = urllib.parse.urlsplit(url)
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        ctx = (ssl_context or ssl.create_default_context()) if tls else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, port, ssl=ctx, limit=READ_SIZE), timeout)
        headers = {"Host": parts.netloc, "Connection": "Upgrade", "Upgrade": "DERP"} | (extra_headers or {})
        if fast_start:
            headers["Derp-Fast-Start"] = "1"
        lines = [f"GET {parts.path or '/derp'} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        conn = protocol.ClientConnection(private_key, mesh_key=mesh_key, app_name=app_name)
        client = cls(reader, writer, conn)
        try:
            if not fast_start:
                status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
                if not status.startswith(b"HTTP/1.1 101"):
                    raise DerpClientError(f"no upgrade: {status.splitlines()[0]!r}")
            await asyncio.wait_for(client._handshake(), timeout)
        except BaseException:
            writer.close()
            raise
        return client

    async def _handshake(self) -> None:
        while self.server_info is None:
            await self._fill()
            while self._events and self.server_info is None:
                ev = self._events.popleft()
                if isinstance(ev, protocol.ServerKeyReceived):
                    self.server_key = ev.server_key
                elif isinstance(ev, protocol.ServerInfoReceived):
                    self.server_info = ev.info

    async def _fill(self) -> None:
        data = await self._reader.read(READ_SIZE)
        if not data:
            raise DerpClientError("connection closed by server")
        for ev in self._conn.receive_data(data):
            if isinstance(ev, protocol.RecvPacket):
                ev = protocol.RecvPacket(ev.src, memoryview(bytes(ev.packet)))
            elif isinstance(ev, protocol.ConnectionClosed):
                raise DerpClientError(ev.reason)
            self._events.append(ev)
        out = self._conn.data_to_send()
        if out:
            self._writer.write(out)

    async def recv(self, timeout: float | None = 30.0) -> protocol.Event:
        """Next event; raises TimeoutError after `timeout` seconds (None waits forever)."""
        if not self._events:
            await asyncio.wait_for(self._fill_some(), timeout)
        return self._events.popleft()

    async def _fill_some(self) -> None:
        while not self._events:
            await self._fill()

    async def recv_packet(self, timeout: float | None = 30.0) -> protocol.RecvPacket:
        """Next RecvPacket, skipping other events."""
        while True:
            ev = await self.recv(timeout)
            if isinstance(ev, protocol.RecvPacket):
                return ev

    def send(self, dst: bytes, packet: bytes) -> None:
        self._writer.write(frames.send_packet(dst, packet))

    def write_raw(self, data: bytes) -> None:
        self._writer.write(data)

    def note_preferred(self, preferred: bool = True) -> None:
        self._writer.write(frames.note_preferred(preferred))

    def ping(self, data: bytes) -> None:
        self._writer.write(frames.ping(data))

    def watch_conns(self) -> None:
        self._writer.write(frames.watch_conns())

    async def drain(self) -> None:
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)

    async def wait_closed_by_server(self, timeout: float = 10.0) -> None:
        """Read until the server closes the connection (raises TimeoutError otherwise)."""
        async def drain_all() -> None:
            while await self._reader.read(READ_SIZE):
                pass
        await asyncio.wait_for(drain_all(), timeout)
