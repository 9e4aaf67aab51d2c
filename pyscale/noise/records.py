"""Sans-IO TS2021 transport records (after the handshake), both directions.

Record: u8 type=4 | u16be length | ChaCha20-Poly1305 ciphertext (plaintext + 16-byte tag).
Nonce = 4 zero bytes + u64 **big-endian** counter (Tailscale deviates from Noise's little
endian), empty associated data, no rekey; a record larger than 4096 bytes in total is fatal.
Source: tailscale control/controlbase/conn.go; docs/tailscale-protocol.md §3.2-3.4.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

MSG_RECORD = 0x04
HEADER_LEN = 3
MAX_RECORD_LEN = 4096  # whole record incl. header
TAG_LEN = 16
MAX_PLAINTEXT = MAX_RECORD_LEN - HEADER_LEN - TAG_LEN  # 4077
_MAX_NONCE = 2**64 - 1


class RecordError(Exception):
    """The peer sent something that is not a valid record; the connection must close."""


def _nonce(counter: int) -> bytes:
    if counter >= _MAX_NONCE:
        raise RecordError("cipher exhausted")
    return bytes(4) + counter.to_bytes(8, "big")


class RecordEncoder:
    """Encrypts a byte stream into records of at most MAX_RECORD_LEN bytes."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._counter = 0

    def encrypt(self, plaintext: bytes) -> bytes:
        out = bytearray()
        view = memoryview(plaintext)
        for start in range(0, max(len(view), 1), MAX_PLAINTEXT):
            chunk = bytes(view[start:start + MAX_PLAINTEXT])
            ciphertext = self._aead.encrypt(_nonce(self._counter), chunk, None)
            self._counter += 1
            out += struct.pack(">BH", MSG_RECORD, len(ciphertext)) + ciphertext
        return bytes(out)


class RecordDecoder:
    """Incremental decoder: feed any slicing of the byte stream, get plaintext chunks back."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._counter = 0
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= HEADER_LEN:
            msg_type, length = struct.unpack_from(">BH", self._buf)
            if msg_type != MSG_RECORD:
                raise RecordError(f"unexpected record type {msg_type}")
            if HEADER_LEN + length > MAX_RECORD_LEN:
                raise RecordError(f"record too large: {HEADER_LEN + length} > {MAX_RECORD_LEN}")
            if len(self._buf) < HEADER_LEN + length:
                break
            ciphertext = bytes(self._buf[HEADER_LEN:HEADER_LEN + length])
            del self._buf[:HEADER_LEN + length]
            out.append(self._decrypt(ciphertext))
        return out

    def _decrypt(self, ciphertext: bytes) -> bytes:
        try:
            plain = self._aead.decrypt(_nonce(self._counter), ciphertext, None)
        except InvalidTag as exc:
            raise RecordError("record authentication failed") from exc
        self._counter += 1
        return plain
