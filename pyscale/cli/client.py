"""The CLI's channel to a running server: HTTP/1.1 + JSON over the unix socket (no auth, like
Headscale's local gRPC socket), or over TCP with an API key in remote mode (``cli.address``)."""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any
from urllib.parse import urlencode, urlsplit


class ClientError(Exception):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class ApiClient:
    def __init__(self, unix_socket: str, *, address: str = "", api_key: str = "", timeout: float = 5.0) -> None:
        self.unix_socket = unix_socket
        self.address = address
        self.api_key = api_key
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        if self.address:
            url = urlsplit(self.address if "://" in self.address else f"http://{self.address}")
            cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
            return cls(url.hostname or "127.0.0.1", url.port, timeout=self.timeout)
        if not os.path.exists(self.unix_socket):
            raise ClientError(f"cannot reach the server: socket {self.unix_socket} does not exist "
                              "(is `pyscale serve` running?)")
        if not os.access(self.unix_socket, os.W_OK):
            raise ClientError(f"permission denied on {self.unix_socket} (run as the server's user or root)")
        return _UnixConnection(self.unix_socket, self.timeout)

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Any:
        if query:
            path += "?" + urlencode(query)
        headers = {"Content-Type": "application/json"}
        if self.address and self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        conn = self._connection()
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as exc:
            raise ClientError(f"cannot reach the server at {self.address or self.unix_socket}: {exc}") from exc
        finally:
            conn.close()
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            payload = {"message": raw.decode(errors="replace").strip()}
        if resp.status >= 400:
            raise ClientError(payload.get("message") if isinstance(payload, dict) else str(payload))
        return payload
