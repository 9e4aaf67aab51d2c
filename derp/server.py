"""Asyncio DERP relay: client registry, bounded per-client send queues, forwarding, mesh, counters.

One task per connection reads chunks, feeds the sans-IO `ServerConnection`, and routes SendPacket events.
Relayed packets are not copied per packet: the RecvPacket header and a memoryview of the received chunk are
appended to the destination's pending batch, and every batch touched by a chunk is written with one
`transport.writelines` at the end of that chunk (batched writes, one syscall per destination per chunk).

Send queues are bounded in bytes: the destination's transport buffer plus its pending batch. A data packet is
dropped (reason `queue_full`) once that exceeds `Limits.send_queue_bytes`; disco packets have their own extra
headroom (`disco_queue_bytes`) above it, so a flood of data never starves disco (NAT traversal). A destination
whose queue is over the limit (or overflowed) at every housekeeping tick for `write_timeout` seconds is
disconnected (`write_timeout`).

Duplicate connections for one key all stay open; the newest is active, and any later frame read from another
one makes that one active (Tailscale's "last writer is active" policy). Packets go to the active one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import frames, protocol
from . import http as derp_http
from .frames import DISCO_MAGIC, DISCO_MIN_LEN, KEY_LEN, PeerGoneReason, PeerPresentFlags

if TYPE_CHECKING:
    from .mesh import MeshLink

log = logging.getLogger("derp.server")

_RECV_HEADER_LEN = frames.FRAME_HEADER_LEN + KEY_LEN
_HEADER_CACHE_SIZE = 64  # distinct packet sizes per sender; WireGuard traffic uses a handful

VerifyClient = Callable[[bytes], Awaitable[bool]]


@dataclass(frozen=True)
class Limits:
    """Named limits; times in seconds, sizes in bytes. 0 disables an optional limit."""

    max_connections: int = 10_000
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


class _Client:
    """One accepted connection (the registry may hold several per key)."""

    __slots__ = (
        "key", "conn", "writer", "transport", "pending", "pending_bytes", "sent_to", "preferred", "mesh_peer",
        "can_ack_pings", "last_read", "over_since", "next_keepalive", "gone_tokens", "gone_stamp", "tokens",
        "token_stamp", "peer_addr", "closing", "flags", "overflowed", "batch", "base_queued", "headers",
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

    def queued(self) -> int:
        return self.transport.get_write_buffer_size() + self.pending_bytes


class DerpServer:
    """The relay. Embed with `serve_upgraded()` after an HTTP `Upgrade: DERP` request was read."""

    def __init__(
        self,
        private_key: bytes,
        *,
        verify_client: VerifyClient | None = None,
        mesh_key: bytes | None = None,
        limits: Limits | None = None,
    ) -> None:
        if len(private_key) != KEY_LEN:
            raise ValueError("DERP private key must be 32 bytes")
        if mesh_key is not None and len(mesh_key) != KEY_LEN:
            raise ValueError("mesh key must be 32 bytes")
        self._private = private_key
        self._public = protocol.public_key_of(private_key)
        self._verify = verify_client
        self._mesh_key = mesh_key
        self.limits = limits or Limits()
        self._conns: set[_Client] = set()
        self._by_key: dict[bytes, list[_Client]] = {}
        self._active: dict[bytes, _Client] = {}
        self._watchers: set[_Client] = set()
        self._remote: dict[bytes, MeshLink] = {}  # keys announced by mesh peers
        self._mesh_links: list[MeshLink] = []
        self._dirty: list[_Client] = []
        self._batch = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._housekeeper: asyncio.Task[None] | None = None
        self._closed = False
        self._rate_limited = self.limits.rate_bytes_per_second > 0
        self.counters: dict[str, int] = {
            "connections_total": 0, "packets_received_total": 0, "bytes_received_total": 0,
            "packets_relayed_total": 0, "bytes_relayed_total": 0, "packets_forwarded_mesh_total": 0,
            "pings_total": 0, "keepalives_sent_total": 0, "peer_gone_sent_total": 0,
        }
        self.drops: dict[str, int] = {}
        self.closes: dict[str, int] = {}

    # --- public API ---------------------------------------------------------------------------

    @property
    def public_key(self) -> bytes:
        return self._public

    @property
    def private_key(self) -> bytes:
        return self._private

    @property
    def mesh_key(self) -> bytes | None:
        return self._mesh_key

    def stats(self) -> dict[str, int]:
        """Counters and gauges; names are valid Prometheus metric names (suffix _total = counter)."""
        out = dict(self.counters)
        out["connections_current"] = len(self._conns)
        out["clients_current"] = len(self._by_key)
        out["home_connections_current"] = sum(1 for c in self._conns if c.preferred)
        out["mesh_peers_current"] = sum(1 for c in self._conns if c.mesh_peer)
        out["remote_clients_current"] = len(self._remote)
        out["send_queue_bytes_max_current"] = max((c.queued() for c in self._conns), default=0)
        out["packets_dropped_total"] = sum(self.drops.values())
        for reason, n in self.drops.items():
            out[f"packets_dropped_{reason}_total"] = n
        for reason, n in self.closes.items():
            out[f"connections_closed_{reason}_total"] = n
        return out

    async def serve_upgraded(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, initial: bytes = b"",
        fast_start: bool = False,
    ) -> None:
        """Run one DERP connection to its end. Writes the 101 unless `fast_start`; never raises OSError."""
        self._ensure_housekeeping()
        if self._closed or len(self._conns) >= self.limits.max_connections:
            self._count_close("connection_limit" if not self._closed else "server_closed")
            if not fast_start:
                writer.write(derp_http.HttpResponse(503, "Service Unavailable").encode())
            await _close_writer(writer)
            return
        now = time.monotonic()
        conn = protocol.ServerConnection(self._private, mesh_key=self._mesh_key, public_key=self._public)
        client = _Client(conn, writer, now)
        peer = writer.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            client.peer_addr = (str(peer[0]), int(peer[1]))
        self._conns.add(client)
        self.counters["connections_total"] += 1
        reason = "eof"
        try:
            if not fast_start:
                writer.write(derp_http.upgrade_response(self._public))
            writer.write(conn.data_to_send())
            reason = await self._run(client, reader, initial)
        except (OSError, EOFError) as exc:
            reason = "io_error"
            log.debug("derp connection %s: %r", client.peer_addr, exc)
        except TimeoutError:
            reason = "handshake_timeout"
        finally:
            self._finish(client, client.closing or reason)
            await _close_writer(writer)

    async def close(self, *, restarting: tuple[int, int] | None = None) -> None:
        """Close every connection and mesh link, stop timers. With `restarting=(reconnect_in_ms, try_for_ms)`
        clients first get a Restarting frame, so they reconnect quickly to the restarted relay."""
        self._closed = True
        for link in list(self._mesh_links):
            await link.close()
        for client in list(self._conns):
            if restarting is not None and client.key:
                self._write(client, frames.restarting(*restarting))
        self._flush()
        for client in list(self._conns):
            self._close_client(client, "server_closed")
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeper
            self._housekeeper = None

    def set_health(self, problem: str) -> None:
        """Tell every connected client about a server problem ("" = healthy again); Health frame."""
        frame = frames.health(problem)
        for client in list(self._conns):
            if client.key:
                self._write(client, frame)
        self._flush()

    def start_stats_log(
        self, interval: float = 60.0, extra: Callable[[], dict[str, int]] | None = None
    ) -> asyncio.Task[None]:
        """Log the counters every `interval` seconds (the periodic line next to the Prometheus export).
        Cancel the returned task to stop it; close() does not."""
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                figures = self.stats() | (extra() if extra else {})
                log.info("derp stats %s", " ".join(f"{k}={v}" for k, v in sorted(figures.items())))

        return asyncio.get_running_loop().create_task(loop())

    def add_mesh_link(self, link: MeshLink) -> None:
        self._mesh_links.append(link)

    # --- connection lifecycle -----------------------------------------------------------------

    async def _run(self, client: _Client, reader: asyncio.StreamReader, initial: bytes) -> str:
        hello = await asyncio.wait_for(self._await_client_info(client, reader, initial),
                                       self.limits.handshake_timeout)
        if hello is None:
            reason = client.conn.close_reason
            return _reason_label(reason) if reason else "eof"
        if not await self._admit(client, hello):
            return client.closing or "rejected"
        self._register(client, hello)
        rate = self.limits.rate_bytes_per_second
        events = client.conn.accept(token_bucket_bytes_per_second=rate,
                                    token_bucket_bytes_burst=self.limits.rate_burst_bytes if rate else 0)
        self._process(client, events)
        read = reader.read
        size = self.limits.read_size
        while not client.closing:
            data = await read(size)
            if not data:
                return "eof"
            self._on_data(client, data)
        return client.closing

    async def _await_client_info(
        self, client: _Client, reader: asyncio.StreamReader, initial: bytes
    ) -> protocol.ClientInfoReceived | None:
        data = initial
        while True:
            for ev in client.conn.receive_data(data) if data else []:
                if isinstance(ev, protocol.ClientInfoReceived):
                    return ev
                if isinstance(ev, protocol.ConnectionClosed):
                    log.info("derp client %s closed: %s", client.peer_addr, ev.reason)
                    return None
            data = await reader.read(self.limits.read_size)
            if not data:
                return None

    async def _admit(self, client: _Client, hello: protocol.ClientInfoReceived) -> bool:
        if hello.is_mesh_peer or self._verify is None:
            return True
        try:
            allowed = await asyncio.wait_for(self._verify(hello.client_key), self.limits.verify_timeout)
        except Exception as exc:  # a failing verifier rejects (fail closed), it never kills the server
            log.warning("derp verify_client failed for %s: %r", hello.client_key.hex(), exc)
            allowed = False
        if not allowed:
            client.closing = "rejected"
            log.info("derp client %s rejected (key %s)", client.peer_addr, hello.client_key.hex())
        return allowed

    def _register(self, client: _Client, hello: protocol.ClientInfoReceived) -> None:
        key = hello.client_key
        client.key = key
        client.mesh_peer = hello.is_mesh_peer
        client.can_ack_pings = hello.info.can_ack_pings
        client.flags = _present_flags(hello)
        now = time.monotonic()
        client.next_keepalive = now + self._keepalive_delay()
        client.gone_tokens = float(self.limits.peer_gone_burst)
        client.tokens = float(self.limits.rate_burst_bytes or self.limits.rate_bytes_per_second)
        existing = self._by_key.setdefault(key, [])
        if existing:
            client.sent_to = existing[0].sent_to  # PeerGone bookkeeping is per key
        existing.append(client)
        self._active[key] = client
        if len(existing) == 1:
            self._announce(key, client, present=True)
        log.debug("derp client %s registered key %s%s", client.peer_addr, key.hex()[:16],
                  " (mesh peer)" if client.mesh_peer else "")

    def _finish(self, client: _Client, reason: str) -> None:
        if client not in self._conns:
            return
        client.closing = client.closing or reason  # no more writes to a connection that is gone
        self._conns.discard(client)
        self._watchers.discard(client)
        self._count_close(reason)
        key = client.key
        group = self._by_key.get(key)
        if group is None or client not in group:
            return
        group.remove(client)
        if group:
            if self._active.get(key) is client:
                self._active[key] = group[-1]
            return
        del self._by_key[key]
        self._active.pop(key, None)
        self._announce(key, client, present=False)
        for peer in client.sent_to:
            dst = self._active.get(peer)
            if dst is not None:
                self._write(dst, frames.peer_gone(key, PeerGoneReason.DISCONNECTED))
                self.counters["peer_gone_sent_total"] += 1
        self._flush()

    def _close_client(self, client: _Client, reason: str) -> None:
        if client.closing:
            return
        client.closing = reason
        if reason not in ("eof", "server_closed"):
            log.info("derp closing %s (key %s): %s", client.peer_addr, client.key.hex()[:16], reason)
        client.transport.close()

    def _count_close(self, reason: str) -> None:
        self.closes[reason] = self.closes.get(reason, 0) + 1

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    # --- hot path -----------------------------------------------------------------------------

    def _on_data(self, client: _Client, data: bytes) -> None:
        now = time.monotonic()
        client.last_read = now
        if self._active.get(client.key) is not client and not client.closing:
            self._active[client.key] = client  # a duplicate that speaks becomes active
        if self._rate_limited:
            self._refill(client, now)
        buf, items = client.conn.receive_items(data)
        if items:
            self._dispatch(client, buf, items)
        out = client.conn.data_to_send()  # pongs: a ping flood must not grow this client's queue either
        if out:
            if client.queued() > self.limits.send_queue_bytes:
                self._drop("pong_queue_full")
            else:
                self._write(client, out)
        self._flush()

    def _process(self, client: _Client, events: list[protocol.Event]) -> None:
        """Handle events outside the hot path (frames that arrived with ClientInfo)."""
        for ev in events:
            if isinstance(ev, protocol.SendPacket):
                self._enqueue_slow(client.key, ev.dst, ev.packet, src=client)
            else:
                self._other_event(client, ev)
        out = client.conn.data_to_send()
        if out:
            self._write(client, out)
        self._flush()

    def _dispatch(self, src: _Client, buf: bytes, items: list[protocol.Item]) -> None:
        """Route one read chunk: every SendPacket becomes a RecvPacket header + a view of `buf`.

        Kept flat on purpose (locals, no per-packet calls on the common path): this loop is the relay's
        per-packet cost. Queue limits use the destination's transport buffer size sampled once per chunk plus
        what this chunk already added.
        """
        active_get = self._active.get
        view = memoryview(buf)
        limit = self.limits.send_queue_bytes
        headers = src.headers
        sent_to = src.sent_to
        dirty = self._dirty
        batch = self._batch
        rate_limited = self._rate_limited
        received = received_bytes = relayed = relayed_bytes = 0
        for item in items:
            if type(item) is not tuple:
                self._other_event(src, item)  # type: ignore[arg-type]
                continue
            start, end = item
            size = end - start - KEY_LEN
            received += 1
            received_bytes += size
            if rate_limited:
                if src.tokens < size:
                    self._drop("rate_limited")
                    continue
                src.tokens -= size
            dst_key = buf[start : start + KEY_LEN]
            dst = active_get(dst_key)
            if dst is None or dst.closing:
                self._route_elsewhere(src, dst_key, view[start + KEY_LEN : end])
                continue
            if dst.batch != batch:
                dst.batch = batch
                dst.base_queued = dst.transport.get_write_buffer_size()
                dirty.append(dst)
            if dst.base_queued + dst.pending_bytes > limit and not self._disco_room(dst, buf, start + KEY_LEN,
                                                                                   size):
                continue
            header = headers.get(size)
            if header is None:
                header = self._header_for(src, size)
            pending = dst.pending
            pending.append(header)
            pending.append(view[start + KEY_LEN : end])
            dst.pending_bytes += size + _RECV_HEADER_LEN
            if dst_key not in sent_to:
                sent_to.add(dst_key)
            relayed += 1
            relayed_bytes += size
        counters = self.counters
        counters["packets_received_total"] += received
        counters["bytes_received_total"] += received_bytes
        counters["packets_relayed_total"] += relayed
        counters["bytes_relayed_total"] += relayed_bytes

    def _header_for(self, src: _Client, size: int) -> bytes:
        if len(src.headers) >= _HEADER_CACHE_SIZE:
            src.headers.clear()
        header = src.headers[size] = frames.recv_packet_header(src.key, size)
        return header

    def _disco_room(self, dst: _Client, buf: bytes, packet_start: int, size: int) -> bool:
        """Over the data limit: only disco may still use its reserved headroom. Counts the drop."""
        disco = size >= DISCO_MIN_LEN and buf.startswith(DISCO_MAGIC, packet_start)
        if disco and dst.base_queued + dst.pending_bytes <= self.limits.send_queue_bytes + \
                self.limits.disco_queue_bytes:
            return True
        self._drop("disco_queue_full" if disco else "queue_full")
        dst.overflowed = True
        return False

    def _enqueue_slow(
        self, src_key: bytes, dst_key: bytes, packet: memoryview, *, src: _Client | None
    ) -> None:
        """One packet outside the hot loop (mesh ForwardPacket, frames that came with ClientInfo)."""
        size = len(packet)
        self.counters["packets_received_total"] += 1
        self.counters["bytes_received_total"] += size
        dst = self._active.get(dst_key)
        if dst is None or dst.closing:
            if src is not None:
                self._route_elsewhere(src, dst_key, packet)
            else:
                self._drop("unknown_dest")
            return
        if dst.batch != self._batch:
            dst.batch = self._batch
            dst.base_queued = dst.transport.get_write_buffer_size()
            self._dirty.append(dst)
        data = bytes(packet)
        if dst.base_queued + dst.pending_bytes > self.limits.send_queue_bytes and not self._disco_room(
                dst, data, 0, size):
            return
        if src is not None:
            src.sent_to.add(dst_key)
        dst.pending.append(frames.recv_packet_header(src_key, size))
        dst.pending.append(packet)
        dst.pending_bytes += size + _RECV_HEADER_LEN
        self.counters["packets_relayed_total"] += 1
        self.counters["bytes_relayed_total"] += size

    def _flush(self) -> None:
        dirty = self._dirty
        self._batch += 1
        if not dirty:
            return
        self._dirty = []
        for dst in dirty:
            parts = dst.pending
            if not parts:
                continue
            dst.pending = []
            dst.pending_bytes = 0
            if not dst.closing:
                # uvloop turns writelines into one writev (no join copy); stock asyncio joins itself.
                dst.transport.writelines(parts)

    def _write(self, client: _Client, data: bytes) -> None:
        if client.closing:
            return
        if client.pending:  # keep order with packets already batched for it
            client.pending.append(data)
            client.pending_bytes += len(data)
        else:
            client.transport.write(data)
            client.base_queued = client.transport.get_write_buffer_size()

    def _route_elsewhere(self, src: _Client, dst_key: bytes, packet: memoryview) -> None:
        link = self._remote.get(dst_key)
        if link is not None and not src.mesh_peer and link.forward(src.key, dst_key, packet):
            self.counters["packets_forwarded_mesh_total"] += 1
            return
        self._drop("unknown_dest")
        if len(packet) >= DISCO_MIN_LEN and packet[:6] == DISCO_MAGIC:
            self._notify_not_here(src, dst_key)

    def _notify_not_here(self, src: _Client, dst_key: bytes) -> None:
        now = time.monotonic()
        lim = self.limits
        src.gone_tokens = min(float(lim.peer_gone_burst), src.gone_tokens + (now - src.gone_stamp) *
                              lim.peer_gone_per_second)
        src.gone_stamp = now
        if src.gone_tokens >= 1.0:
            src.gone_tokens -= 1.0
            self._write(src, frames.peer_gone(dst_key, PeerGoneReason.NOT_HERE))
            self.counters["peer_gone_sent_total"] += 1

    def _refill(self, client: _Client, now: float) -> None:
        lim = self.limits
        burst = float(lim.rate_burst_bytes or lim.rate_bytes_per_second)
        client.tokens = min(burst, client.tokens + (now - client.token_stamp) * lim.rate_bytes_per_second)
        client.token_stamp = now

    # --- other frames ---------------------------------------------------------------------------

    def _other_event(self, client: _Client, ev: protocol.Event) -> None:
        if isinstance(ev, protocol.ForwardPacket):
            self._deliver_forwarded(ev)
        elif isinstance(ev, protocol.NotePreferred):
            client.preferred = ev.preferred
        elif isinstance(ev, protocol.PingReceived):
            self.counters["pings_total"] += 1
        elif isinstance(ev, protocol.WatchConns):
            self._add_watcher(client)
        elif isinstance(ev, protocol.ClosePeer):
            for target in list(self._by_key.get(bytes(ev.key), [])):
                self._close_client(target, "closed_by_mesh")
        elif isinstance(ev, protocol.ConnectionClosed):
            self._close_client(client, _reason_label(ev.reason))
            log.info("derp client %s protocol error: %s", client.peer_addr, ev.reason)

    def _deliver_forwarded(self, ev: protocol.ForwardPacket) -> None:
        self._enqueue_slow(bytes(ev.src), bytes(ev.dst), ev.packet, src=None)

    def _add_watcher(self, client: _Client) -> None:
        self._watchers.add(client)
        for key, group in self._by_key.items():
            if key != client.key:
                self._write(client, _present_frame(key, group[-1]))

    def _announce(self, key: bytes, client: _Client, *, present: bool) -> None:
        if not self._watchers:
            return
        frame = _present_frame(key, client) if present else frames.peer_gone(key)
        for watcher in self._watchers:
            if watcher is not client:
                self._write(watcher, frame)

    # --- mesh link callbacks (see derp.mesh) --------------------------------------------------

    def remote_present(self, key: bytes, link: MeshLink) -> None:
        self._remote[key] = link

    def remote_gone(self, key: bytes, link: MeshLink) -> None:
        if self._remote.get(key) is link:
            del self._remote[key]

    def remote_link_down(self, link: MeshLink) -> None:
        for key in [k for k, v in self._remote.items() if v is link]:
            del self._remote[key]

    # --- timers -------------------------------------------------------------------------------

    def _keepalive_delay(self) -> float:
        return self.limits.keepalive_interval + random.random() * self.limits.keepalive_jitter

    def _ensure_housekeeping(self) -> None:
        if self._housekeeper is None or self._housekeeper.done():
            self._housekeeper = asyncio.get_running_loop().create_task(self._housekeeping())

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.limits.housekeeping_interval)
            self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        """Keep-alives, idle and write timeouts. Called every `housekeeping_interval` seconds."""
        lim = self.limits
        for client in list(self._conns):
            if not client.key or client.closing:
                continue
            # The kernel socket buffer hides a stalled reader for a while, so an overflow since the last
            # tick counts as "over the limit" just like a full queue right now.
            over = client.overflowed or client.queued() > lim.send_queue_bytes
            client.overflowed = False
            if over:
                if not client.over_since:
                    client.over_since = now
                elif now - client.over_since > lim.write_timeout:
                    self._close_client(client, "write_timeout")
                    continue
            else:
                client.over_since = 0.0
            if lim.idle_timeout and client.can_ack_pings and now - client.last_read > lim.idle_timeout:
                self._close_client(client, "idle_timeout")
            elif now >= client.next_keepalive:
                client.next_keepalive = now + self._keepalive_delay()
                self._write(client, frames.keep_alive())
                if lim.idle_timeout and client.can_ack_pings:
                    self._write(client, frames.ping(random.randbytes(8)))
                self.counters["keepalives_sent_total"] += 1
        self._flush()


def _present_flags(hello: protocol.ClientInfoReceived) -> int:
    if hello.is_mesh_peer:
        return PeerPresentFlags.MESH_PEER
    return PeerPresentFlags.PROBER if hello.info.is_prober else PeerPresentFlags.REGULAR


def _present_frame(key: bytes, client: _Client) -> bytes:
    host, port = client.peer_addr
    return frames.peer_present(key, _ip16(host), port, client.flags)


def _ip16(host: str) -> bytes:
    import ipaddress

    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return bytes(16)
    if isinstance(addr, ipaddress.IPv4Address):
        return b"\x00" * 10 + b"\xff\xff" + addr.packed
    return addr.packed


def _reason_label(reason: str) -> str:
    """Collapse a protocol error text into a short metric label."""
    for needle, label in (("too large", "frame_too_large"), ("mesh key", "mesh_required"),
                          ("ClientInfo", "bad_client_info"), ("short", "short_frame")):
        if needle in reason:
            return label
    return "protocol_error"


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(writer.wait_closed(), 2.0)
