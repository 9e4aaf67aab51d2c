"""Minimal HTTP/1.1 server edge: request heads, bodies, responses, and socket hand-over for upgrades.

pyscale's listeners speak plain HTTP/1.1 (TLS, when used, sits in front or is wrapped by the
listener). Two routes take the raw connection over after their request head (``/ts2021`` for
Noise, ``/derp`` for the relay), so the parser works on an asyncio StreamReader and leaves
whatever follows the head unread. Limits: 64 KiB of headers, 4 MiB of body.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("pyscale.http")

MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024
READ_TIMEOUT_S = 30.0

REASONS = {
    101: "Switching Protocols", 200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
    426: "Upgrade Required", 500: "Internal Server Error", 503: "Service Unavailable",
}


class BadRequest(Exception):
    pass


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes = b""
    peer: str = ""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.target).query).items()}

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as exc:
            raise BadRequest(f"invalid JSON body: {exc}") from exc


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    hijacked: bool = False  # the handler took the connection over

    @classmethod
    def json(cls, obj: Any, status: int = 200, content_type: str = "application/json; charset=utf-8") -> Response:
        return cls(status, json.dumps(obj).encode() + b"\n", [("Content-Type", content_type)])

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
        return cls(status, text.encode(), [("Content-Type", content_type)])

    @classmethod
    def html(cls, text: str, status: int = 200) -> Response:
        return cls.text(text, status, "text/html; charset=utf-8")

    def encode(self, keep_alive: bool) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        lines.append(f"Content-Length: {len(self.body)}")
        if not keep_alive:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


HIJACKED = Response(hijacked=True)
Handler = Callable[[Request], Awaitable[Response]]


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes everything
        raise BadRequest("undecodable request head") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"malformed request line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"malformed header line {line[:80]!r}")
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return parts[0], parts[1], headers


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest("connection closed inside request head") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    method, target, headers = parse_head(head[:-4])
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise BadRequest("chunked request bodies are not supported")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as exc:
        raise BadRequest("bad Content-Length") from exc
    if length < 0 or length > MAX_BODY:
        raise BadRequest("request body too large")
    body = await reader.readexactly(length) if length else b""
    return Request(method, target, headers, body)


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler) -> None:
    """Serve requests on one connection until close, error, or a handler hijacks it."""
    peer = writer.get_extra_info("peername")
    try:
        while True:
            try:
                req = await asyncio.wait_for(read_request(reader), READ_TIMEOUT_S * 4)
            except BadRequest as exc:
                writer.write(Response.text(f"{exc}\n", 400).encode(False))
                return
            except (TimeoutError, asyncio.IncompleteReadError):
                return
            if req is None:
                return
            req.peer = peer[0] if isinstance(peer, tuple) else str(peer or "unix")
            req.reader, req.writer = reader, writer
            resp = await _dispatch(handler, req)
            if resp.hijacked:
                return
            keep = req.header("connection").lower() != "close"
            writer.write(resp.encode(keep))
            await writer.drain()
            if not keep:
                return
    except (ConnectionError, OSError):
        pass
    finally:
        if not writer.is_closing():
            writer.close()


async def _dispatch(handler: Handler, req: Request) -> Response:
    try:
        return await handler(req)
    except BadRequest as exc:
        return Response.text(f"{exc}\n", 400)
    except (ConnectionError, asyncio.IncompleteReadError):
        raise
    except Exception:
        log.exception("handler failed for %s %s", req.method, req.path)
        return Response.text("Internal error\n", 500)
