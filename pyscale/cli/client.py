"""The CLI's channel to a running server: the REST API v1 over HTTP/1.1.

Local mode talks to the unix socket (trusted, no key, like Headscale's local gRPC socket).
Remote mode (``cli.address`` / ``HEADSCALE_CLI_ADDRESS``) talks to the server's HTTP listener
with ``Authorization: Bearer <cli.api_key>``; an address without a scheme means HTTPS (Headscale's
remote CLI always uses TLS), ``http://`` is accepted for a loopback or a trusted network, and
``cli.insecure`` skips certificate verification. Failures carry the gRPC code name and message,
so errors read like Headscale's (``rpc error: code = NotFound desc = node not found``).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

GRPC_CODE_NAMES = {0: "OK", 1: "Canceled", 2: "Unknown", 3: "InvalidArgument", 4: "DeadlineExceeded",
                   5: "NotFound", 6: "AlreadyExists", 7: "PermissionDenied", 8: "ResourceExhausted",
                   9: "FailedPrecondition", 10: "Aborted", 11: "OutOfRange", 12: "Unimplemented", 13: "Internal",
                   14: "Unavailable", 15: "DataLoss", 16: "Unauthenticated"}


class ClientError(Exception):
    """A failed call. ``message`` is the status message; str() is the gRPC-style error text."""

    def __init__(self, message: str, code: int = 14) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"rpc error: code = {GRPC_CODE_NAMES.get(self.code, str(self.code))} desc = {self.message}"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def segment(value: object) -> str:
    """One path segment (a node name or API-key prefix), escaped."""
    return quote(str(value), safe="")


class ApiClient:
    def __init__(self, unix_socket: str, *, address: str = "", api_key: str = "", timeout: float = 5.0,
                 insecure: bool = False) -> None:
        self.unix_socket = unix_socket
        self.address = address
        self.api_key = api_key
        self.timeout = timeout
        self.insecure = insecure

    def _connection(self) -> http.client.HTTPConnection:
        if self.address:
            url = urlsplit(self.address if "://" in self.address else f"https://{self.address}")
            if url.scheme == "https":
                ctx = ssl.create_default_context()
                if self.insecure:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                return http.client.HTTPSConnection(url.hostname or "127.0.0.1", url.port, timeout=self.timeout,
                                                   context=ctx)
            return http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=self.timeout)
        if not os.path.exists(self.unix_socket):
            raise ClientError(f"cannot reach the server: socket {self.unix_socket} does not exist "
                              "(is `pyscale serve` running?)")
        if not os.access(self.unix_socket, os.W_OK):
            raise ClientError(f"Unable to read/write to headscale socket {self.unix_socket}, "
                              "do you have the correct permissions?", 7)
        return _UnixConnection(self.unix_socket, self.timeout)

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Any:
        if query:
            path += "?" + urlencode(query)
        headers = {"Content-Type": "application/json"}
        if self.address:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        try:
            conn = self._connection()
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            raise ClientError(f"cannot reach the server at {self.address or self.unix_socket}: {exc}") from exc
        if resp.status == 401:
            raise ClientError("Unauthorized: the API key is missing, unknown or expired", 16)
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            payload = {"message": raw.decode(errors="replace").strip()}
        if resp.status >= 400:
            if isinstance(payload, dict):
                raise ClientError(str(payload.get("message", "")), int(payload.get("code", 2) or 2))
            raise ClientError(str(payload), 2)
        return payload
