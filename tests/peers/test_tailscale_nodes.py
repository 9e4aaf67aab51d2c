"""Real ``tailscaled`` v1.90.9 nodes driven by the real ``tailscale`` CLI against ``pyscale serve``.

`tailscale up --login-server --authkey`, `status --json`, `ping`, `netcheck`, `logout`, and TCP echo over the
tailnet through each node's SOCKS5 listener, both direct and forced through pyscale's embedded DERP.
"""

from __future__ import annotations

import http.server
import re
import subprocess
import threading
import urllib.request
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from tests.interop.harness import PyscaleServer, wait_until
from tests.peers.tailnet import EchoServer, Tailscaled, socks5_echo

pytestmark = pytest.mark.interop

MakeNode = Callable[..., Tailscaled]
PONG = re.compile(r"pong from (\S+) \((\S+)\) via (.+?) in ")


def _get(opener: urllib.request.OpenerDirector, url: str) -> bytes:
    with opener.open(url, timeout=10) as resp:
        return bytes(resp.read())


class HelloServer(http.server.ThreadingHTTPServer):
    """A fixed answer on 127.0.0.1 (a userspace tailscaled hands tailnet connections to its IP:port to it)."""

    daemon_threads = True

    def __init__(self, body: bytes) -> None:
        outer_body = body

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer_body)))
                self.end_headers()
                self.wfile.write(outer_body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.port = int(self.server_address[1])
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> HelloServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


def auth_key(server: PyscaleServer, user: str = "alice") -> str:
    server.cli("users", "create", user)
    uid = next(u["id"] for u in server.cli_json("users", "list") if u["name"] == user)
    return server.cli("preauthkeys", "-u", str(uid), "create", "--reusable", "-e", "1h").stdout.strip()


def up_pair(server: PyscaleServer, make_node: MakeNode, **env: str) -> tuple[Tailscaled, Tailscaled]:
    key = auth_key(server)
    a, b = make_node("nodea", **env), make_node("nodeb", **env)
    a.up(server.url, key)
    b.up(server.url, key)
    wait_until("each node lists the other", lambda: a.peer("nodeb") and b.peer("nodea"), timeout=60)
    return a, b


def pongs(node: Tailscaled, peer_ip: str, count: int = 10) -> list[tuple[str, str, str]]:
    res = node.cli("ping", f"--c={count}", "--timeout=5s", peer_ip, check=False)
    return [(m.group(1), m.group(2), m.group(3)) for m in PONG.finditer(res.stdout)]


def echo_over_tailnet(src: Tailscaled, dst_ip: str, echo: EchoServer) -> bool:
    payload = f"hello {dst_ip} from {src.name} ".encode() * 200
    return socks5_echo(src.socks_port, dst_ip, echo.port, payload) == payload


def test_two_nodes_up_see_each_other(pyscale: PyscaleServer, make_tailscaled: MakeNode) -> None:
    a, b = up_pair(pyscale, make_tailscaled)
    assert a.backend_state() == "Running" and b.backend_state() == "Running"
    ip_a, ip_b = a.ipv4(), b.ipv4()
    assert ip_a != ip_b and ip_a.startswith("100.") and ip_b.startswith("100.")
    peer_b = a.peer("nodeb")
    assert peer_b is not None and ip_b in peer_b["TailscaleIPs"]
    peer_a = b.peer("nodea")
    assert peer_a is not None and ip_a in peer_a["TailscaleIPs"]
    # The server's view agrees with the clients' (names, addresses, online).
    listed: dict[str, dict[str, Any]] = {n["given_name"]: n for n in pyscale.nodes()}
    assert listed["nodea"]["ip_addresses"][0] == ip_a and listed["nodeb"]["ip_addresses"][0] == ip_b
    wait_until(
        "both online on the server",
        lambda: all(n.get("online") for n in pyscale.nodes() if n["given_name"] in {"nodea", "nodeb"}),
    )


def test_tcp_echo_direct(pyscale: PyscaleServer, make_tailscaled: MakeNode) -> None:
    a, b = up_pair(pyscale, make_tailscaled)
    ip_b = b.ipv4()
    # `tailscale ping` keeps going until a direct path answers; the last pong names it.
    results = wait_until(
        "a direct pong", lambda: [p for p in pongs(a, ip_b) if not p[2].startswith("DERP")], timeout=60
    )
    assert results[-1][0].startswith("nodeb") and results[-1][1] == ip_b
    with EchoServer() as echo:
        assert wait_until("echo a -> b direct", lambda: echo_over_tailnet(a, ip_b, echo), timeout=60)
        assert echo_over_tailnet(b, a.ipv4(), echo)
    peer = a.peer("nodeb")
    assert peer is not None and peer["CurAddr"].startswith("127.0.0.1:"), peer  # direct, on loopback


def test_http_proxy_listener_and_magicdns_name(pyscale: PyscaleServer, make_tailscaled: MakeNode) -> None:
    """tailscaled's HTTP proxy dials a peer by its MagicDNS name (from pyscale's DNS config in the netmap)."""
    a, b = up_pair(pyscale, make_tailscaled)
    with HelloServer(b"hello over the tailnet") as web:
        proxy = urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{a.http_proxy_port}"})
        opener = urllib.request.build_opener(proxy)
        for host in (b.ipv4(), "nodeb.tailnet.test"):
            url = f"http://{host}:{web.port}/"
            body = wait_until(f"GET {url} via nodea's HTTP proxy", partial(_get, opener, url))
            assert body == b"hello over the tailnet"


def test_tcp_echo_through_embedded_derp(pyscale: PyscaleServer, make_tailscaled: MakeNode) -> None:
    a, b = up_pair(pyscale, make_tailscaled, TS_DEBUG_ALWAYS_USE_DERP="true")
    ip_b = b.ipv4()
    results = wait_until("a pong", lambda: pongs(a, ip_b, count=3), timeout=60)
    assert all(via == "DERP(embedded)" for _, _, via in results), results
    before = pyscale.metrics().get("headscale_derp_bytes_relayed_total", 0.0)
    with EchoServer() as echo:
        assert wait_until("echo a -> b via DERP", lambda: echo_over_tailnet(a, ip_b, echo), timeout=60)
        assert echo_over_tailnet(b, a.ipv4(), echo)
    after = pyscale.metrics()["headscale_derp_bytes_relayed_total"]
    assert after - before > 2 * 4000, (before, after)  # both echoes (4+ KB each way) crossed the relay
    peer = a.peer("nodeb")
    assert peer is not None and not peer["CurAddr"] and peer["Relay"] == "embedded", peer


def test_netcheck_sees_embedded_stun(pyscale: PyscaleServer, make_tailscaled: MakeNode) -> None:
    a, _ = up_pair(pyscale, make_tailscaled)
    res = a.cli("netcheck", "--format=json")
    report = _json_tail(res.stdout)
    assert report["UDP"] is True, report
    assert report["PreferredDERP"] == 999, report
    assert "999" in report["RegionLatency"] and "999" in report["RegionV4Latency"], report
    assert report["GlobalV4"].startswith("127.0.0.1:"), report


def test_interactive_login_completed_by_nodes_register(
    pyscale: PyscaleServer, make_tailscaled: MakeNode
) -> None:
    """`tailscale up` without a key prints pyscale's /register URL; `pyscale nodes register` completes it."""
    pyscale.cli("users", "create", "bob")
    node = make_tailscaled("webnode")
    cmd = [
        str(node.tailscale),
        f"--socket={node.socket}",
        "up",
        f"--login-server={pyscale.url}",
        "--hostname=webnode",
        "--accept-dns=false",
        "--timeout=90s",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=node.env)
    try:
        assert proc.stdout is not None
        url_re = re.compile(re.escape(pyscale.url) + r"/register/([A-Za-z0-9_-]+)")
        seen = ""
        while not (m := url_re.search(seen)):
            line = proc.stdout.readline()
            assert line, f"tailscale up exited before printing the login URL:\n{seen}"
            seen += line
        out = pyscale.cli("nodes", "register", "--user", "bob", "--key", m.group(1)).stdout
        assert "webnode" in out
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert node.backend_state() == "Running"
    listed = next(n for n in pyscale.nodes() if n["given_name"] == "webnode")
    assert listed["user"]["name"] == "bob" and listed["ip_addresses"][0] == node.ipv4()


def test_logout(pyscale: PyscaleServer, make_tailscaled: MakeNode) -> None:
    a, b = up_pair(pyscale, make_tailscaled)
    a.cli("logout")
    assert wait_until("nodea logged out", lambda: a.backend_state() == "NeedsLogin", timeout=30)
    # The server expires the node (Headscale sets its expiry to the logout time) and peers drop it.
    wait_until(
        "nodea expired on the server",
        lambda: next(n for n in pyscale.nodes() if n["given_name"] == "nodea").get("expiry"),
        timeout=30,
    )
    wait_until(
        "nodeb no longer sees nodea online", lambda: not (b.peer("nodea") or {}).get("Online"), timeout=60
    )
    assert b.backend_state() == "Running"


def _json_tail(text: str) -> dict[str, Any]:
    """netcheck may print log lines before its JSON object."""
    import json

    start = text.index("{")
    data: dict[str, Any] = json.loads(text[start:])
    return data
