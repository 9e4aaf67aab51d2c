"""API keys in Headscale v0.27.1's format: ``<prefix>.<secret>``, the secret kept only as bcrypt.

Creation: 7-char prefix and 32-char secret, each the URL-safe base64 of as many random bytes,
cut to length (as Headscale's GenerateRandomStringURLSafe); stored hash is bcrypt cost 10 with
the ``$2a$`` tag Go's x/crypto/bcrypt writes, so a rollback to Headscale keeps the keys working.
Keys from older Headscale versions (10-char prefixes, ``$2b$12$`` hashes) verify the same way.

Verification answers only yes or no; the edge turns "no" into a bare 401. It does the same work
whatever is wrong with the key: every stored prefix is compared with compare_digest (no early
exit), and a bcrypt check runs even for an unknown prefix or an expired key, so timing tells a
caller nothing about which part failed. A verified key is remembered by the SHA-256 of the whole
token (never the token itself) so each request does not pay a bcrypt; expiry and existence are
checked on every request. On the server the bcrypt step runs in a worker thread, at most
BCRYPT_PARALLEL at a time, so it never stalls the event loop (map streams, DERP) and a flood of
bad keys costs bounded CPU. Nothing here logs a key, a secret or a hash.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import bcrypt

from pyscale.state.model import ApiKey, utcnow

PREFIX_LEN = 7
SECRET_LEN = 32
BCRYPT_COST = 10
AUTH_SCHEME = "Bearer "  # exact, case-sensitive, as Headscale's middleware
VERIFIED_CACHE_MAX = 256
BCRYPT_PARALLEL = 2  # concurrent bcrypt checks (each ~70 ms of one core at cost 10)
_DUMMY_HASH = bcrypt.hashpw(b"pyscale-dummy-secret", bcrypt.gensalt(BCRYPT_COST, prefix=b"2a"))


def _random_urlsafe(n: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(n)).rstrip(b"=").decode()[:n]


def new_api_key() -> tuple[str, str, bytes]:
    """(full key shown once, prefix, bcrypt hash of the secret)."""
    prefix, secret = _random_urlsafe(PREFIX_LEN), _random_urlsafe(SECRET_LEN)
    hashed = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(BCRYPT_COST, prefix=b"2a"))
    return f"{prefix}.{secret}", prefix, hashed


def _bcrypt_ok(secret: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(secret, hashed)
    except ValueError:  # a stored hash bcrypt cannot read: the key cannot match
        return False


@dataclass
class _Attempt:
    """One token, looked up: what the bcrypt step needs, or the answer when no bcrypt is needed."""

    digest: bytes
    secret: bytes
    match: ApiKey | None
    live: bool
    answer: bool | None = None  # known without bcrypt (verified before)


class ApiKeyVerifier:
    def __init__(self, keys: Callable[[], Iterable[ApiKey]]) -> None:
        self._keys = keys
        self._verified: dict[bytes, int] = {}  # sha256(token) -> api key id
        self._slots: asyncio.Semaphore | None = None  # bcrypt runs off the event loop, a few at a time

    def check_header(self, header: str, now: datetime | None = None) -> bool:
        """Synchronous check (bcrypt on this thread): for tests and tools, not the event loop."""
        if not header.startswith(AUTH_SCHEME):
            return False
        attempt = self._lookup(header[len(AUTH_SCHEME):], now)
        if attempt.answer is not None:
            return attempt.answer
        return self._finish(attempt, _bcrypt_ok(attempt.secret, attempt.match.hash if attempt.match else _DUMMY_HASH))

    async def verify_header(self, header: str, now: datetime | None = None) -> bool:
        """The edge's check: a 60-80 ms bcrypt must not stall every map stream, so it runs in a thread;
        at most BCRYPT_PARALLEL at once, so a flood of bad keys costs bounded CPU."""
        if not header.startswith(AUTH_SCHEME):
            return False
        attempt = self._lookup(header[len(AUTH_SCHEME):], now)
        if attempt.answer is not None:
            return attempt.answer
        if self._slots is None:
            self._slots = asyncio.Semaphore(BCRYPT_PARALLEL)
        hashed = attempt.match.hash if attempt.match else _DUMMY_HASH
        async with self._slots:
            ok = await asyncio.to_thread(_bcrypt_ok, attempt.secret, hashed)
        return self._finish(attempt, ok)

    def _lookup(self, token: str, now: datetime | None) -> _Attempt:
        now = now or utcnow()
        prefix, dot, secret = token.partition(".")
        match = self._find(prefix) if dot else None
        live = match is not None and match.expiration is not None and match.expiration >= now
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        attempt = _Attempt(digest, secret.encode("utf-8", "surrogateescape"), match, live)
        cached = self._verified.get(digest)
        if cached is not None and match is not None and cached == match.id:
            attempt.answer = live
        return attempt

    def _finish(self, attempt: _Attempt, ok: bool) -> bool:
        if ok and attempt.match is not None:
            if len(self._verified) >= VERIFIED_CACHE_MAX:
                self._verified.clear()
            self._verified[attempt.digest] = attempt.match.id
        return ok and attempt.live

    def _find(self, prefix: str) -> ApiKey | None:
        found = None
        wanted = prefix.encode("utf-8", "surrogateescape")
        for key in list(self._keys()):
            if hmac.compare_digest(key.prefix.encode(), wanted) and found is None:
                found = key
        return found

    def forget(self, key_id: int) -> None:
        for digest in [d for d, k in self._verified.items() if k == key_id]:
            del self._verified[digest]
