"""`python -m derp` as a process: two relays meshed with a key, TLS, the key file, --verify-client-url."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from relay_helpers import eventually

from derp import protocol
from derp.client import DerpClient, DerpClientError

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Relays:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, *extra: str, port: int | None = None, tls_ctx: ssl.SSLContext | None = None
    ) -> int:
        port = port or _free_port()
        args = [sys.executable, "-m", "derp", "-a", f"127.0.0.1:{port}", "--stun-port", "-1",
                "-c", str(self.tmp / f"{name}.key"), "--stats-interval", "0", *extra]
        err = open(self.tmp / f"{name}.err", "wb")  # noqa: SIM115 - the child keeps its copy
        self.procs.append(subprocess.Popen(args, stderr=err, stdout=subprocess.DEVNULL,
                                           env=dict(os.environ, PYTHONPATH=str(REPO))))
        err.close()
        scheme = "https" if tls_ctx else "http"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/derp/probe", timeout=2, context=tls_ctx)
                return port
            except OSError:
                if time.monotonic() > deadline or self.procs[-1].poll() is not None:
                    raise AssertionError((self.tmp / f"{name}.err").read_text()) from None
                time.sleep(0.05)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                assert p.wait(timeout=10) == 0  # SIGTERM is a clean shutdown
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def relays(tmp_path: Path) -> Iterator[Relays]:
    r = Relays(tmp_path)
    try:
        yield r
    finally:
        r.stop()


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(f"headscale_derp_{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


@pytest.mark.asyncio
async def test_two_meshed_relays(relays: Relays, tmp_path: Path) -> None:
    psk = tmp_path / "mesh.psk"
    psk.write_text(os.urandom(32).hex() + "\n")
    p1, p2 = _free_port(), _free_port()
    await asyncio.to_thread(relays.start, "r1", "--mesh-psk-file", str(psk), "--mesh-with", f"127.0.0.1:{p2}",
                            port=p1)
    await asyncio.to_thread(relays.start, "r2", "--mesh-psk-file", str(psk), "--mesh-with", f"127.0.0.1:{p1}",
                            port=p2)
    a = await DerpClient.connect(f"http://127.0.0.1:{p1}/derp", os.urandom(32))
    b = await DerpClient.connect(f"http://127.0.0.1:{p2}/derp", os.urandom(32))
    await eventually(lambda: _metric(p1, "remote_clients_current") >= 1 and
                     _metric(p2, "remote_clients_current") >= 1, timeout=30)
    a.send(b.public_key, b"hello over the mesh")
    got = await b.recv_packet()
    assert (got.src, bytes(got.packet)) == (a.public_key, b"hello over the mesh")
    b.send(a.public_key, b"reply")
    assert bytes((await a.recv_packet()).packet) == b"reply"
    assert _metric(p1, "packets_forwarded_mesh_total") == 1
    assert _metric(p2, "packets_forwarded_mesh_total") == 1
    await a.close()
    await b.close()


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.asyncio
async def test_tls_listener_and_key_file(relays: Relays, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    ctx = ssl.create_default_context(cafile=str(cert))
    port = await asyncio.to_thread(relays.start, "tls", "--certfile", str(cert), "--keyfile", str(key),
                                   tls_ctx=ctx)
    stored = json.loads((tmp_path / "tls.key").read_text())["PrivateKey"]
    assert stored.startswith("privkey:") and (tmp_path / "tls.key").stat().st_mode & 0o777 == 0o600
    a = await DerpClient.connect(f"https://127.0.0.1:{port}/derp", os.urandom(32), ssl_context=ctx)
    b = await DerpClient.connect(f"https://127.0.0.1:{port}/derp", os.urandom(32), ssl_context=ctx)
    assert a.server_key == protocol.public_key_of(bytes.fromhex(stored.removeprefix("privkey:")))
    a.send(b.public_key, b"over tls")
    assert bytes((await b.recv_packet()).packet) == b"over tls"
    await a.close()
    await b.close()


@pytest_asyncio.fixture
async def admit_server() -> AsyncIterator[tuple[str, list[dict[str, str]], set[str]]]:
    """A tiny DERPAdmitClientRequest endpoint: allows the node keys in the returned set."""
    seen: list[dict[str, str]] = []
    allowed: set[str] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        body = json.loads(await reader.readexactly(length))
        seen.append(body)
        answer = json.dumps({"Allow": body["NodePublic"] in allowed}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (len(answer), answer))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/verify", seen, allowed
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_verify_client_url(relays: Relays,
                                 admit_server: tuple[str, list[dict[str, str]], set[str]]) -> None:
    url, seen, allowed = admit_server
    port = await asyncio.to_thread(relays.start, "verify", "--verify-client-url", url,
                                   "--no-verify-client-url-fail-open")
    good = os.urandom(32)
    allowed.add("nodekey:" + protocol.public_key_of(good).hex())
    client = await DerpClient.connect(f"http://127.0.0.1:{port}/derp", good)
    with pytest.raises(DerpClientError):
        await DerpClient.connect(f"http://127.0.0.1:{port}/derp", os.urandom(32))
    assert [s["NodePublic"] for s in seen][0] in allowed and len(seen) == 2
    await client.close()
