"""Mesh links: this relay as a client of the other relays of its region (derper `--mesh-with`).

Each link dials a peer's `/derp` with the shared mesh key, sends WatchConns, and mirrors the peer's
PeerPresent/PeerGone stream into the server's remote-key table; packets for those keys leave as ForwardPacket
frames on the link. A dropped link forgets its keys and redials with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import urllib.parse
from typing import TYPE_CHECKING

from . import frames, protocol
from .frames import PeerPresentFlags

if TYPE_CHECKING:
    from .server import DerpServer

log = logging.getLogger("derp.mesh")

MAX_UPGRADE_RESPONSE = 16 << 10
CONNECT_TIMEOUT = 10.0
READ_SIZE = 256 << 10


class MeshError(Exception):
    pass


def mesh_url(target: str) -> str:
    """derper accepts bare host[:port] in --mesh-with; make it a /derp URL (plain HTTP unless given)."""
    if "://" not in target:
        target = "http://" + target
    parts = urllib.parse.urlsplit(target)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/derp", "", ""))


class MeshLink:
    def __init__(
        self, server: DerpServer, url: str, *, ssl_context: ssl.SSLContext | None = None,
        min_backoff: float = 0.2, max_backoff: float = 10.0,
    ) -> None:
        if server.mesh_key is None:
            raise ValueError("mesh links need the server's mesh key")
        self._server = server
        self.url = mesh_url(url)
        self._ssl = ssl_context
        self._min_backoff, self._max_backoff = min_backoff, max_backoff
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.forwarded = 0

    def start(self) -> None:
        self._server.add_mesh_link(self)
        self._task = asyncio.get_running_loop().create_task(self._run_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def forward(self, src: bytes, dst: bytes, packet: bytes | memoryview) -> bool:
        writer = self._writer
        if writer is None or writer.transport.is_closing():
            return False
        writer.write(b"".join((frames.forward_packet_header(src, dst, len(packet)), packet)))
        self.forwarded += 1
        return True

    async def _run_forever(self) -> None:
        backoff = self._min_backoff
        while True:
            try:
                await self._run_once()
                backoff = self._min_backoff
            except (OSError, MeshError, TimeoutError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError) as exc:
                log.warning("derp mesh link %s: %r", self.url, exc)
            finally:
                self._writer = None
                self.connected.clear()
                self._server.remote_link_down(self)
            await asyncio.sleep(backoff)
            backoff = min(self._max_backoff, backoff * 2)

    async def _dial(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        parts = urllib.parse.urlsplit(self.url)
        tls = parts.scheme == "https"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if tls else 80)
        ctx = (self._ssl or ssl.create_default_context()) if tls else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, limit=MAX_UPGRADE_RESPONSE), CONNECT_TIMEOUT)
        writer.write(
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: pyscale-derp-mesh\r\n"
            "Connection: Upgrade\r\nUpgrade: DERP\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT)
        if not head.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101")):
            writer.close()
            status = head.split(b"\r\n", 1)[0]
            raise MeshError(f"upgrade refused: {status!r}")
        return reader, writer

    async def _run_once(self) -> None:
        reader, writer = await self._dial()
        server = self._server
        conn = protocol.ClientConnection(server.private_key, mesh_key=server.mesh_key, app_name="derp-mesh")
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    raise MeshError("peer closed the connection")
                for ev in conn.receive_data(data):
                    self._handle(ev, conn, writer)
                out = conn.data_to_send()
                if out:
                    writer.write(out)
        finally:
            writer.close()

    def _handle(
        self, ev: protocol.Event, conn: protocol.ClientConnection, writer: asyncio.StreamWriter
    ) -> None:
        server = self._server
        if isinstance(ev, protocol.ServerInfoReceived):
            conn.watch_conns()
            self._writer = writer
            self.connected.set()
            log.info("derp mesh link %s up", self.url)
        elif isinstance(ev, protocol.PeerPresent):
            if ev.key != server.public_key and not ev.flags & PeerPresentFlags.MESH_PEER:
                server.remote_present(ev.key, self)
        elif isinstance(ev, protocol.PeerGone):
            server.remote_gone(ev.key, self)
        elif isinstance(ev, protocol.ConnectionClosed):
            raise MeshError(ev.reason)
