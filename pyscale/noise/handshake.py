"""Sans-IO TS2021 handshake: the responder side of Noise_IK_25519_ChaChaPoly_BLAKE2s.

The client sends its 101-byte initiation inside the ``X-Tailscale-Handshake`` header; the server
answers with a 51-byte response (or an error message) and both sides derive one key per
direction. Layouts and steps: tailscale control/controlbase/{messages,handshake}.go, summarised
in docs/tailscale-protocol.md §3. The ephemeral key is passed in so tests replay exactly.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PROTOCOL_NAME = b"Noise_IK_25519_ChaChaPoly_BLAKE2s"
PROLOGUE_PREFIX = b"Tailscale Control Protocol v"

# Initiation: u16be version | u8 type=1 | u16be len=96 | eph pub (32) | enc machine key (48) | tag (16)
MSG_INITIATION = 0x01
INITIATION_LEN = 101
INITIATION_PAYLOAD_LEN = 96
# Response: u8 type=2 | u16be len=48 | eph pub (32) | tag (16)
MSG_RESPONSE = 0x02
RESPONSE_PAYLOAD_LEN = 48
# Error: u8 type=3 | u16be len | utf-8 text (unauthenticated)
MSG_ERROR = 0x03
MAX_ERROR_TEXT = 0xFFFF

_ZERO_NONCE = bytes(12)


class HandshakeError(Exception):
    """The initiation is unusable; str(exc) is safe to send back in an error message."""


def blake2s(data: bytes) -> bytes:
    return hashlib.blake2s(data).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    # Noise's HMAC is RFC 2104 HMAC over BLAKE2s (block size 64), not BLAKE2s keyed mode.
    return hmac.new(key, data, hashlib.blake2s).digest()


def hkdf2(chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    prk = _hmac(chaining_key, ikm)
    out1 = _hmac(prk, b"\x01")
    return out1, _hmac(prk, out1 + b"\x02")


def x25519(private: bytes, public: bytes) -> bytes:
    shared = X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))
    if shared == bytes(32):
        raise HandshakeError("invalid public key")
    return shared


def x25519_public(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw
    )


def error_message(text: str) -> bytes:
    """The bytes of a handshake error message carrying ``text`` (truncated to fit)."""
    raw = text.encode()[:MAX_ERROR_TEXT]
    return struct.pack(">BH", MSG_ERROR, len(raw)) + raw


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    response: bytes  # the 51 bytes to send after the HTTP 101
    protocol_version: int  # = the client's capability version
    client_machine_key: bytes  # raw 32-byte machine public key, the client's identity
    c2s_key: bytes
    s2c_key: bytes
    handshake_hash: bytes


class _SymmetricState:
    def __init__(self, prologue: bytes) -> None:
        self.h = blake2s(PROTOCOL_NAME)  # name is 33 bytes > 32, so hashed
        self.ck = self.h
        self.mix_hash(prologue)

    def mix_hash(self, data: bytes) -> None:
        self.h = blake2s(self.h + data)

    def mix_dh(self, shared: bytes) -> bytes:
        self.ck, key = hkdf2(self.ck, shared)
        return key

    def decrypt_and_hash(self, key: bytes, ciphertext: bytes) -> bytes:
        try:
            plain = ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, ciphertext, self.h)
        except InvalidTag as exc:
            raise HandshakeError("decrypting machine key: authentication failed") from exc
        self.mix_hash(ciphertext)
        return plain

    def encrypt_and_hash(self, key: bytes, plaintext: bytes) -> bytes:
        ciphertext = ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, plaintext, self.h)
        self.mix_hash(ciphertext)
        return ciphertext


def parse_version(initiation: bytes) -> int:
    if len(initiation) != INITIATION_LEN:
        raise HandshakeError("wrong handshake initiation size")
    version, msg_type, length = struct.unpack(">HBH", initiation[:5])
    if msg_type != MSG_INITIATION:
        raise HandshakeError("unexpected handshake message type")
    if length != INITIATION_PAYLOAD_LEN:
        raise HandshakeError("wrong handshake initiation length")
    return int(version)


def respond(initiation: bytes, static_private: bytes, ephemeral_private: bytes) -> HandshakeResult:
    """Run the responder side of Noise IK on one initiation message."""
    version = parse_version(initiation)
    client_eph, enc_static, tag = initiation[5:37], initiation[37:85], initiation[85:101]
    state = _SymmetricState(PROLOGUE_PREFIX + str(version).encode())
    state.mix_hash(x25519_public(static_private))
    # Message 1 (e, es, s, ss), mirrored.
    state.mix_hash(client_eph)
    key = state.mix_dh(x25519(static_private, client_eph))
    client_static = state.decrypt_and_hash(key, enc_static)
    key = state.mix_dh(x25519(static_private, client_static))
    state.decrypt_and_hash(key, tag)
    # Message 2 (e, ee, se).
    server_eph = x25519_public(ephemeral_private)
    state.mix_hash(server_eph)
    state.mix_dh(x25519(ephemeral_private, client_eph))
    key = state.mix_dh(x25519(ephemeral_private, client_static))
    resp_tag = state.encrypt_and_hash(key, b"")
    c2s, s2c = hkdf2(state.ck, b"")
    response = struct.pack(">BH", MSG_RESPONSE, RESPONSE_PAYLOAD_LEN) + server_eph + resp_tag
    return HandshakeResult(response, version, client_static, c2s, s2c, state.h)
