"""STUN binding requests as Tailscale's netcheck sends them, and the XOR-MAPPED-ADDRESS answer (RFC 5389).

Accepted request (Tailscale `net/stun/stun.go`): top two bits of byte 0 zero, type 0x0001, magic cookie, an
attribute length that matches the datagram, a SOFTWARE attribute "tailnode", and FINGERPRINT as the last
attribute with a correct CRC-32 (XOR 0x5354554e). Anything else is dropped and counted by reason.
The response carries only XOR-MAPPED-ADDRESS (family 1 for IPv4 clients, 2 for IPv6), no SOFTWARE/FINGERPRINT.
"""

from __future__ import annotations

import asyncio
import binascii
import ipaddress
import logging
import socket
import struct
from typing import cast

log = logging.getLogger("derp.stun")

MAGIC_COOKIE = b"\x21\x12\xa4\x42"
HEADER_LEN = 20
TXID_LEN = 12
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
ATTR_XOR_MAPPED_ADDRESS = 0x0020
ATTR_SOFTWARE = 0x8022
ATTR_FINGERPRINT = 0x8028
FINGERPRINT_XOR = 0x5354554E
SOFTWARE = b"tailnode"
MAX_DATAGRAM = 64 << 10

_HDR = struct.Struct(">HH4s12s")
_ATTR = struct.Struct(">HH")
_COOKIE_INT = int.from_bytes(MAGIC_COOKIE, "big")
# Layout of netcheck's request after the transaction ID: SOFTWARE attr + "tailnode" + FINGERPRINT attr header
_NETCHECK_SHAPE = (_ATTR.pack(ATTR_SOFTWARE, len(SOFTWARE)) + SOFTWARE + _ATTR.pack(ATTR_FINGERPRINT, 4)
                   + bytes(4))
_NETCHECK_PREFIX = struct.pack(">HH", BINDING_REQUEST, len(_NETCHECK_SHAPE)) + MAGIC_COOKIE
_V4_HEAD = struct.pack(">HH", BINDING_SUCCESS, 12) + MAGIC_COOKIE
_V4_ATTR = _ATTR.pack(ATTR_XOR_MAPPED_ADDRESS, 8) + b"\x00\x01"


class StunError(ValueError):
    """Why a datagram is not an acceptable binding request; `reason` is a metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fingerprint(data: bytes) -> int:
    return (binascii.crc32(data) ^ FINGERPRINT_XOR) & 0xFFFFFFFF


def parse_binding_request(data: bytes) -> bytes:
    """Transaction ID of a valid Tailscale binding request, else StunError(reason)."""
    if (len(data) == HEADER_LEN + len(_NETCHECK_SHAPE) and data.startswith(_NETCHECK_PREFIX)
            and data[20:36] == _NETCHECK_SHAPE[:16]):
        # Fast path: exactly what netcheck sends (SOFTWARE "tailnode" then FINGERPRINT).
        if int.from_bytes(data[36:40], "big") != fingerprint(data[:32]):
            raise StunError("bad_fingerprint")
        return bytes(data[8:20])
    return _parse_general(data)


def _parse_general(data: bytes) -> bytes:
    if len(data) < HEADER_LEN:
        raise StunError("short")
    msg_type, length, cookie, txid = _HDR.unpack_from(data)
    if data[0] & 0xC0 or cookie != MAGIC_COOKIE:
        raise StunError("not_stun")
    if msg_type != BINDING_REQUEST:
        raise StunError("not_binding_request")
    if length != len(data) - HEADER_LEN or length % 4:
        raise StunError("bad_length")
    software = False
    pos = HEADER_LEN
    while pos < len(data):
        if len(data) - pos < 4:
            raise StunError("bad_attribute")
        attr_type, attr_len = _ATTR.unpack_from(data, pos)
        value_end = pos + 4 + attr_len
        if value_end > len(data):
            raise StunError("bad_attribute")
        if attr_type == ATTR_SOFTWARE:
            software = data[pos + 4 : value_end] == SOFTWARE
        elif attr_type == ATTR_FINGERPRINT:
            if attr_len != 4 or value_end != len(data):
                raise StunError("bad_fingerprint")
            if int.from_bytes(data[pos + 4 : value_end], "big") != fingerprint(data[:pos]):
                raise StunError("bad_fingerprint")
            if not software:
                raise StunError("not_tailnode")
            return bytes(txid)
        pos = value_end + (-attr_len % 4)  # attributes are padded to 4 bytes
    raise StunError("no_fingerprint")


def binding_request(txid: bytes) -> bytes:
    """The 40-byte request Tailscale's netcheck sends (for tests and benchmarks)."""
    body = _ATTR.pack(ATTR_SOFTWARE, len(SOFTWARE)) + SOFTWARE
    head = _HDR.pack(BINDING_REQUEST, len(body) + 8, MAGIC_COOKIE, txid)
    partial = head + body
    return partial + _ATTR.pack(ATTR_FINGERPRINT, 4) + struct.pack(">I", fingerprint(partial))


def binding_response(txid: bytes, host: str, port: int) -> bytes:
    """Success response with XOR-MAPPED-ADDRESS for the datagram's source host:port."""
    xport = port ^ 0x2112
    try:
        packed = socket.inet_aton(host) if "." in host and ":" not in host else None
    except OSError:
        packed = None
    if packed is None:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        packed = addr.packed
    if len(packed) == 4:
        xaddr = (int.from_bytes(packed, "big") ^ _COOKIE_INT).to_bytes(4, "big")
        return _V4_HEAD + txid + _V4_ATTR + xport.to_bytes(2, "big") + xaddr
    key = MAGIC_COOKIE + txid
    xaddr = bytes(a ^ b for a, b in zip(packed, key, strict=True))
    attr = _ATTR.pack(ATTR_XOR_MAPPED_ADDRESS, 20) + struct.pack(">BBH", 0, 2, xport) + xaddr
    return _HDR.pack(BINDING_SUCCESS, len(attr), MAGIC_COOKIE, txid) + attr


def parse_binding_response(data: bytes) -> tuple[bytes, str, int]:
    """(txid, ip, port) from a success response with XOR-MAPPED-ADDRESS (client side, for tests)."""
    msg_type, length, cookie, txid = _HDR.unpack_from(data)
    if msg_type != BINDING_SUCCESS or cookie != MAGIC_COOKIE:
        raise StunError("not_binding_response")
    attr_type, attr_len = _ATTR.unpack_from(data, HEADER_LEN)
    if attr_type != ATTR_XOR_MAPPED_ADDRESS:
        raise StunError("no_xor_mapped_address")
    _, family, xport = struct.unpack_from(">BBH", data, HEADER_LEN + 4)
    raw = data[HEADER_LEN + 8 : HEADER_LEN + 4 + attr_len]
    key = MAGIC_COOKIE if family == 1 else MAGIC_COOKIE + txid
    ip = ipaddress.ip_address(bytes(a ^ b for a, b in zip(raw, key, strict=False)))
    return bytes(txid), str(ip), xport ^ 0x2112


class StunProtocol(asyncio.DatagramProtocol):
    """Answers binding requests on a UDP socket; counts answers and drops by reason.

    asyncio hands over one datagram per event-loop wakeup. When the protocol owns its socket (`start_stun`
    passes it in), each wakeup also drains up to DRAIN_BATCH more datagrams straight from the non-blocking
    socket and answers them with sendto, which removes most of the per-request loop overhead under load.
    """

    DRAIN_BATCH = 64

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self._sock = sock
        self.counters: dict[str, int] = {"stun_requests_total": 0, "stun_responses_total": 0}
        self.drops: dict[str, int] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        response = self._answer(data, addr)
        if response is not None and self.transport is not None:
            self.transport.sendto(response, addr)
            self.counters["stun_responses_total"] += 1
        if self._sock is not None:
            self._drain(self._sock)

    def _drain(self, sock: socket.socket) -> None:
        for _ in range(self.DRAIN_BATCH):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error_received(exc)
                return
            response = self._answer(data, addr)
            if response is None:
                continue
            try:
                sock.sendto(response, addr)
            except (BlockingIOError, InterruptedError):
                self._drop("send_buffer_full")
                continue
            except OSError as exc:
                self.error_received(exc)
                continue
            self.counters["stun_responses_total"] += 1

    def _answer(self, data: bytes, addr: tuple[str | int, ...]) -> bytes | None:
        self.counters["stun_requests_total"] += 1
        try:
            return binding_response(parse_binding_request(data), str(addr[0]), int(addr[1]))
        except StunError as exc:
            self._drop(exc.reason)
        except ValueError:
            self._drop("bad_source")
        return None

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def error_received(self, exc: Exception) -> None:
        log.debug("stun socket error: %r", exc)

    def stats(self) -> dict[str, int]:
        out = dict(self.counters)
        out["stun_dropped_total"] = sum(self.drops.values())
        for reason, n in self.drops.items():
            out[f"stun_dropped_{reason}_total"] = n
        return out


async def start_stun(host: str, port: int) -> tuple[asyncio.DatagramTransport, StunProtocol]:
    """Listen for STUN on host:port (port 0 picks one; read it from transport.get_extra_info('sockname'))."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
        transport, proto = await loop.create_datagram_endpoint(lambda: StunProtocol(sock), sock=sock)
    except BaseException:
        sock.close()
        raise
    return transport, proto
