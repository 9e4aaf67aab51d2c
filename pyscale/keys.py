"""Typed Curve25519 public keys with Tailscale's text prefixes.

Tailscale marshals every key as ``<prefix>:<64 hex>`` (types/key/*.go); the prefix must match
exactly, hex may be upper or lower case. Private keys use ``privkey:`` (Headscale's noise key
file format). Keys are immutable value objects so they can be dict keys in State.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import ClassVar, Self

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

KEY_LEN = 32


class KeyError_(ValueError):
    """A key's text or bytes are malformed."""


@dataclass(frozen=True, slots=True)
class _Key:
    raw: bytes
    PREFIX: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if len(self.raw) != KEY_LEN:
            raise KeyError_(f"{self.PREFIX}: key must be {KEY_LEN} bytes, got {len(self.raw)}")

    @classmethod
    def parse(cls, text: str) -> Self:
        prefix = cls.PREFIX + ":"
        if not text.startswith(prefix):
            raise KeyError_(f"key {text[:20]!r} lacks prefix {prefix!r}")
        hexpart = text[len(prefix):]
        if len(hexpart) != 2 * KEY_LEN:
            raise KeyError_(f"key {text[:20]!r}: want {2 * KEY_LEN} hex digits")
        try:
            return cls(bytes.fromhex(hexpart))
        except ValueError as exc:
            raise KeyError_(f"key {text[:20]!r}: bad hex") from exc

    @classmethod
    def zero(cls) -> Self:
        return cls(bytes(KEY_LEN))

    def is_zero(self) -> bool:
        return self.raw == bytes(KEY_LEN)

    def __str__(self) -> str:
        return f"{self.PREFIX}:{self.raw.hex()}"

    def short(self) -> str:
        """Tailscale's ShortString, used in Headscale's tables: ``[`` + base64(raw)[:5] + ``]``."""
        return f"[{base64.b64encode(self.raw).decode()[:5]}]"


@dataclass(frozen=True, slots=True)
class MachinePublic(_Key):
    PREFIX: ClassVar[str] = "mkey"


@dataclass(frozen=True, slots=True)
class NodePublic(_Key):
    PREFIX: ClassVar[str] = "nodekey"


@dataclass(frozen=True, slots=True)
class DiscoPublic(_Key):
    PREFIX: ClassVar[str] = "discokey"


@dataclass(frozen=True, slots=True)
class ChallengePublic(_Key):
    PREFIX: ClassVar[str] = "chalpub"


@dataclass(frozen=True, slots=True)
class PrivateKey(_Key):
    """An X25519 private scalar in Headscale's on-disk text form ``privkey:<hex>``."""

    PREFIX: ClassVar[str] = "privkey"

    @classmethod
    def generate(cls) -> PrivateKey:
        raw = X25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(raw)

    def public_raw(self) -> bytes:
        return X25519PrivateKey.from_private_bytes(self.raw).public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw
        )

    def __repr__(self) -> str:  # never leak the secret into logs
        return "PrivateKey(<redacted>)"
