"""STUN: byte layouts from RFC 5389 / Tailscale net/stun (docs/tailscale-protocol.md section 11)."""

from __future__ import annotations

import asyncio
import socket
import struct
import zlib

import pytest

from derp import stun

TXID = bytes.fromhex("0102030405060708090a0b0c")
# A netcheck binding request laid out by hand from the table: header, SOFTWARE "tailnode", FINGERPRINT.
_HEAD = bytes.fromhex("0001" "0014" "2112a442") + TXID + bytes.fromhex("80220008") + b"tailnode"
REQUEST = _HEAD + bytes.fromhex("80280004") + struct.pack(">I", (zlib.crc32(_HEAD) ^ 0x5354554E) & 0xFFFFFFFF)


def test_request_layout() -> None:
    assert len(REQUEST) == 40  # 20 header + 12 SOFTWARE + 8 FINGERPRINT (the doc says "48": a slip)
    assert stun.binding_request(TXID) == REQUEST
    assert stun.parse_binding_request(REQUEST) == TXID


def test_ipv4_response_bytes() -> None:
    # 192.0.2.1:32853 -> port 0x8055 ^ 0x2112 = 0xa147; address XOR cookie = e1 12 a6 43
    attr = bytes.fromhex("0020" "0008" "0001" "a147" "e112a643")
    expected = bytes.fromhex("0101" "000c" "2112a442") + TXID + attr
    assert stun.binding_response(TXID, "192.0.2.1", 0x8055) == expected
    assert stun.parse_binding_response(expected) == (TXID, "192.0.2.1", 0x8055)
    # a v4-mapped IPv6 source is answered as IPv4 (family 1)
    assert stun.binding_response(TXID, "::ffff:192.0.2.1", 0x8055) == expected


def test_ipv6_response_bytes() -> None:
    resp = stun.binding_response(TXID, "2001:db8::1", 3478)
    assert resp[:4] == bytes.fromhex("01010018") and resp[20:26] == bytes.fromhex("00200014" "0002")
    key = bytes.fromhex("2112a442") + TXID
    addr = bytes(a ^ b for a, b in zip(resp[28:44], key, strict=True))
    assert addr == socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    assert stun.parse_binding_response(resp) == (TXID, "2001:db8::1", 3478)


def _refingerprint(data: bytes) -> bytes:
    return data[:-4] + struct.pack(">I", stun.fingerprint(data[:-8]))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (REQUEST[:19], "short"),
        (b"\x40" + REQUEST[1:], "not_stun"),
        (REQUEST[:4] + b"\x00\x00\x00\x00" + REQUEST[8:], "not_stun"),
        (_refingerprint(b"\x00\x03" + REQUEST[2:]), "not_binding_request"),
        (REQUEST + b"\x00\x00\x00\x00", "bad_length"),
        (REQUEST[:-1] + bytes([REQUEST[-1] ^ 1]), "bad_fingerprint"),
        (_refingerprint(REQUEST[:24] + b"othernod" + REQUEST[32:]), "not_tailnode"),
        (REQUEST[:2] + b"\x00\x0c" + REQUEST[4:32], "no_fingerprint"),
        (REQUEST[:2] + b"\x00\x04" + REQUEST[4:20] + b"\x80\x22\x00\x09", "bad_attribute"),
    ],
)
def test_malformed_requests(data: bytes, reason: str) -> None:
    with pytest.raises(stun.StunError) as info:
        stun.parse_binding_request(data)
    assert info.value.reason == reason


@pytest.mark.asyncio
async def test_udp_server_answers_and_counts_drops() -> None:
    transport, proto = await stun.start_stun("127.0.0.1", 0)
    port = transport.get_extra_info("sockname")[1]
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    try:
        await loop.sock_sendto(sock, b"garbage", ("127.0.0.1", port))
        await loop.sock_sendto(sock, REQUEST, ("127.0.0.1", port))
        data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 10)
        assert stun.parse_binding_response(data) == (TXID, "127.0.0.1", sock.getsockname()[1])
        stats = proto.stats()
        assert stats["stun_requests_total"] == 2 and stats["stun_responses_total"] == 1
        assert stats["stun_dropped_short_total"] == 1 and stats["stun_dropped_total"] == 1
    finally:
        sock.close()
        transport.close()
