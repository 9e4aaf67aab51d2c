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


class StunError(ValueError):
    """Why a datagram is not an acceptable binding request; `reason` is a metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fingerprint(data: bytes) -> int:
    return (binascii.crc32(data) ^ FINGERPRINT_XOR) & 0xFFFFFFFF


def parse_binding_request(data: bytes) -> bytes:
    """Transaction ID of a valid Tailscale binding request, else StunError(reason)."""
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
    addr = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    xport = port ^ 0x2112
    if isinstance(addr, ipaddress.IPv4Address):
        family, key = 1, MAGIC_COOKIE
    else:
        family, key = 2, MAGIC_COOKIE + txid
    xaddr = bytes(a ^ b for a, b in zip(addr.packed, key, strict=True))
    attr = _ATTR.pack(ATTR_XOR_MAPPED_ADDRESS, 4 + len(xaddr)) + struct.pack(">BBH", 0, family, xport) + xaddr
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
    """Answers binding requests on a UDP socket; counts answers and drops by reason."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.counters: dict[str, int] = {"stun_requests_total": 0, "stun_responses_total": 0}
        self.drops: dict[str, int] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.counters["stun_requests_total"] += 1
        try:
            txid = parse_binding_request(data)
            response = binding_response(txid, str(addr[0]), int(addr[1]))
        except StunError as exc:
            self.drops[exc.reason] = self.drops.get(exc.reason, 0) + 1
            return
        except ValueError:
            self.drops["bad_source"] = self.drops.get("bad_source", 0) + 1
            return
        if self.transport is not None:
            self.transport.sendto(response, addr)
            self.counters["stun_responses_total"] += 1

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
    transport, proto = await loop.create_datagram_endpoint(StunProtocol, local_addr=(host, port))
    return transport, proto
