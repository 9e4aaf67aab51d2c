"""HTTP pieces of a DERP server shared by pyscale's listener and the standalone `python -m derp`.

`route()` answers the small probe endpoints; `upgrade_kind()` classifies a `/derp` request;
`upgrade_response()` is the exact 101 the relay writes
(Tailscale `derp/derpserver/handler.go`, `cmd/derper/derper.go`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

DERP_PATH = "/derp"
PROBE_PATHS = ("/derp/probe", "/derp/latency-check")
GENERATE_204_PATH = "/generate_204"
# Captive-portal check: echo the challenge back (derper's serveNoContent).
CHALLENGE_HEADER = "x-tailscale-challenge"
RESPONSE_HEADER = "X-Tailscale-Response"
_CHALLENGE_OK = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class HttpResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def encode(self, *, close: bool = True) -> bytes:
        """Serialize as HTTP/1.1 (Content-Length always set)."""
        lines = [f"HTTP/1.1 {self.status} {self.reason}"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        lines.append(f"Content-Length: {len(self.body)}")
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def _header(headers: Iterable[tuple[str | bytes, str | bytes]], name: str) -> str | None:
    for key, value in headers:
        k = key.decode("latin-1") if isinstance(key, bytes) else key
        if k.lower() == name:
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return None


def route(
    method: str, path: str, headers: Iterable[tuple[str | bytes, str | bytes]] = ()
) -> HttpResponse | None:
    """Response for the DERP probe routes, or None when `path` is not one of them."""
    path = path.split("?", 1)[0]
    if path in PROBE_PATHS:
        if method not in ("GET", "HEAD"):
            return HttpResponse(405, "Method Not Allowed", [("Content-Type", "text/plain")],
                                b"bogus probe method\n")
        return HttpResponse(200, "OK", [("Access-Control-Allow-Origin", "*")])
    if path == GENERATE_204_PATH:
        extra: list[tuple[str, str]] = []
        challenge = _header(headers, CHALLENGE_HEADER)
        if challenge is not None and _CHALLENGE_OK.match(challenge):
            extra.append((RESPONSE_HEADER, "response " + challenge))
        return HttpResponse(204, "No Content", extra)
    return None


def upgrade_kind(headers: Iterable[tuple[str | bytes, str | bytes]]) -> str | None:
    """'derp' or 'websocket' for an acceptable `/derp` upgrade request, else None (answer 426)."""
    value = (_header(headers, "upgrade") or "").strip().lower()
    return value if value in ("derp", "websocket") else None


def is_fast_start(headers: Iterable[tuple[str | bytes, str | bytes]]) -> bool:
    return (_header(headers, "derp-fast-start") or "").strip() == "1"


def upgrade_required() -> HttpResponse:
    return HttpResponse(426, "Upgrade Required", [("Content-Type", "text/plain")],
                        b"DERP requires connection upgrade\n")


def upgrade_response(public_key: bytes) -> bytes:
    """The 101 written before the frame protocol starts (byte-identical to the tailcat vector)."""
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: DERP\r\n"
        "Connection: Upgrade\r\n"
        "Derp-Version: 2\r\n"
        f"Derp-Public-Key: {public_key.hex()}\r\n\r\n"
    ).encode()
