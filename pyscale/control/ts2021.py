"""The ``/ts2021`` edge: HTTP upgrade, Noise handshake, then HTTP/2 (h2) over Noise records.

One instance per client connection. The socket is read by one task that feeds the record
decoder and the h2 state machine; each complete request runs in its own task (register may
long-poll, the map stream lives as long as the session). Anything malformed closes this one
connection with a reason; nothing here can take the server down.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from pyscale.keys import MachinePublic, PrivateKey
from pyscale.noise import handshake
from pyscale.noise.early import MIN_VERSION as EARLY_MIN_VERSION
from pyscale.noise.early import early_payload
from pyscale.noise.records import RecordDecoder, RecordEncoder, RecordError

log = logging.getLogger("pyscale.ts2021")

UPGRADE_PROTOCOL = "tailscale-control-protocol"
HANDSHAKE_HEADER = "x-tailscale-handshake"
MIN_CAPABILITY_VERSION = 90  # Headscale v0.27.1's minimum: Tailscale v1.64
READ_CHUNK = 64 * 1024
MAX_REQUEST_BODY = 1024 * 1024
IDLE_TIMEOUT_S = 300.0  # a client with an open map stream talks at least every ~60 s (keep-alives)


@dataclass
class H2Request:
    stream_id: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)
    machine_key: MachinePublic = field(default_factory=MachinePublic.zero)
    capability_version: int = 0


@dataclass
class H2Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    stream: AsyncIterator[bytes] | None = None  # long-poll body: each item is sent and flushed


RequestHandler = Callable[[H2Request], Awaitable[H2Response]]


class UpgradeError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


def check_upgrade(headers: dict[str, str]) -> bytes:
    """Validate the upgrade request; returns the 101-byte initiation."""
    upgrade = headers.get("upgrade", "").lower()
    if not upgrade:
        raise UpgradeError(500, "Internal error: missing Upgrade header (is a reverse proxy stripping it?)")
    if upgrade != UPGRADE_PROTOCOL:
        raise UpgradeError(400, f"unknown next protocol {upgrade!r}")
    raw = headers.get(HANDSHAKE_HEADER, "")
    if not raw:
        raise UpgradeError(400, "no tailscale handshake header")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise UpgradeError(400, "handshake header is not valid base64") from None


class NoiseH2Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: RequestHandler,
                 result: handshake.HandshakeResult) -> None:
        self.reader = reader
        self.writer = writer
        self.handler = handler
        self.machine_key = MachinePublic(result.client_machine_key)
        self.version = result.protocol_version
        self._decoder = RecordDecoder(result.c2s_key)
        self._encoder = RecordEncoder(result.s2c_key)
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8", validate_inbound_headers=True)
        self.h2 = h2.connection.H2Connection(config)
        self._requests: dict[int, H2Request] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._window_open = asyncio.Event()
        self._closed = False

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self, initial: bytes = b"") -> None:
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 250,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
        })
        self.h2.initiate_connection()
        await self._flush()
        try:
            if initial:
                self._receive(initial)
                await self._flush()
            while not self._closed:
                data = await asyncio.wait_for(self.reader.read(READ_CHUNK), IDLE_TIMEOUT_S)
                if not data:
                    break
                self._receive(data)
                await self._flush()
        except RecordError as exc:
            log.info("closing noise connection from %s: %s", self.machine_key, exc)
        except h2.exceptions.ProtocolError as exc:
            log.info("closing noise connection from %s: HTTP/2 protocol error: %s", self.machine_key, exc)
            self._try_flush_now()
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self._closed = True
        for task in list(self._tasks.values()):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if not self.writer.is_closing():
            self.writer.close()

    # ---- inbound -------------------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        for plaintext in self._decoder.receive_data(data):
            for event in self.h2.receive_data(plaintext):
                self._on_event(event)

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = {str(k): str(v) for k, v in (event.headers or [])}
            assert event.stream_id is not None
            self._requests[event.stream_id] = H2Request(
                event.stream_id, headers.get(":method", ""), headers.get(":path", ""), headers,
                machine_key=self.machine_key, capability_version=self.version)
        elif isinstance(event, h2.events.DataReceived):
            self._on_data(event)
        elif isinstance(event, h2.events.StreamEnded):
            assert event.stream_id is not None
            req = self._requests.pop(event.stream_id, None)
            if req is not None:
                self._tasks[req.stream_id] = asyncio.create_task(self._serve(req))
        elif isinstance(event, h2.events.StreamReset):
            self._requests.pop(event.stream_id or 0, None)
            task = self._tasks.get(event.stream_id or 0)
            if task is not None:
                task.cancel()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._window_open.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._closed = True

    def _on_data(self, event: h2.events.DataReceived) -> None:
        assert event.stream_id is not None and event.data is not None
        self.h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
        req = self._requests.get(event.stream_id)
        if req is None:
            return
        req.body += event.data
        if len(req.body) > MAX_REQUEST_BODY:
            del self._requests[event.stream_id]
            self.h2.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)

    # ---- outbound ------------------------------------------------------------------------

    async def _serve(self, req: H2Request) -> None:
        try:
            resp = await self.handler(req)
            await self._send_response(req.stream_id, resp)
        except asyncio.CancelledError:
            pass
        except (ConnectionError, OSError, h2.exceptions.StreamClosedError):
            pass
        except Exception:
            log.exception("request %s %s failed", req.method, req.path)
            self._reset(req.stream_id)
        finally:
            self._tasks.pop(req.stream_id, None)

    async def _send_response(self, stream_id: int, resp: H2Response) -> None:
        headers = [(":status", str(resp.status))]
        if resp.content_type:
            headers.append(("content-type", resp.content_type))
        if resp.stream is None:
            headers.append(("content-length", str(len(resp.body))))
            self.h2.send_headers(stream_id, headers, end_stream=not resp.body)
            if resp.body:
                await self._send_data(stream_id, resp.body, end_stream=True)
            await self._flush()
            return
        self.h2.send_headers(stream_id, headers)
        await self._flush()
        try:
            async for chunk in resp.stream:
                await self._send_data(stream_id, chunk)
        finally:
            await resp.stream.aclose()  # type: ignore[attr-defined]  # runs the stream's cleanup now
        self.h2.end_stream(stream_id)
        await self._flush()

    async def _send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        view = memoryview(data)
        while view:
            window = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
            if window <= 0:
                self._window_open.clear()
                await self._window_open.wait()
                continue
            chunk, view = view[:window], view[window:]
            self.h2.send_data(stream_id, bytes(chunk), end_stream=end_stream and not view)
            await self._flush()

    def _reset(self, stream_id: int) -> None:
        try:
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            self._try_flush_now()
        except h2.exceptions.H2Error:
            pass

    def _try_flush_now(self) -> None:
        out = self.h2.data_to_send()
        if out and not self.writer.is_closing():
            self.writer.write(self._encoder.encrypt(out))

    async def _flush(self) -> None:
        self._try_flush_now()
        await self.writer.drain()


async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str],
                 static_key: PrivateKey, handler: RequestHandler) -> None:
    """Run the whole TS2021 exchange after the upgrade request head was read."""
    try:
        initiation = check_upgrade(headers)
    except UpgradeError as exc:
        _write_plain(writer, exc.status, str(exc))
        return
    if len(initiation) >= 2 and int.from_bytes(initiation[:2], "big") < MIN_CAPABILITY_VERSION:
        version = int.from_bytes(initiation[:2], "big")
        _write_plain(writer, 400, f"unsupported client version: {version}")
        return
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: tailscale-control-protocol\r\n"
                 b"Connection: upgrade\r\n\r\n")
    try:
        result = handshake.respond(initiation, static_key.raw, PrivateKey.generate().raw)
    except handshake.HandshakeError as exc:
        log.info("rejecting TS2021 handshake: %s", exc)
        writer.write(handshake.error_message(str(exc)))
        await writer.drain()
        writer.close()
        return
    conn = NoiseH2Connection(reader, writer, handler, result)
    writer.write(result.response)
    if result.protocol_version >= EARLY_MIN_VERSION:
        writer.write(conn._encoder.encrypt(early_payload(PrivateKey.generate().public_raw())))
    await writer.drain()
    await conn.run()


def _write_plain(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    body = (text + "\n").encode()
    writer.write(f"HTTP/1.1 {status} Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
