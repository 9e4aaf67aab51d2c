"""Real Tailscale nodes (``tailscaled --tun=userspace-networking`` + the ``tailscale`` CLI) and the two
control servers (pyscale, Headscale v0.27.1) they log in to, all on loopback in one temp dir.

Each ``Tailscaled`` has its own socket, state dir, WireGuard port and SOCKS5/HTTP proxy listeners, so a
test can open TCP connections over the tailnet from the host. Every process is started in its own session
and stopped by its pid; tailscaled also gets ``TS_PARENT_DEATH_FD`` so it dies with the test process.
Waits poll a condition with a generous deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from tests.interop.harness import PyscaleServer, client_env, free_port, stop_process_group, wait_until

CLI_TIMEOUT_S = 90.0
# Keep every packet on loopback: nodes advertise only the endpoint the (loopback) STUN server saw, not the
# host's interface addresses, and the port mapper (which would probe the LAN gateway) is off.
NODE_ENV = {
    "TS_DISABLE_PORTMAPPER": "1",
    "TS_DEBUG_OMIT_LOCAL_ADDRS": "true",
    "TS_ASSUME_NETWORK_UP_FOR_TEST": "1",
}


def server_config(
    root: Path, port: int, stun_port: int, metrics_port: int, grpc_port: int, region_code: str = "embedded"
) -> str:
    """One Headscale-format config that both servers read unchanged (the drop-in promise)."""
    return f"""\
server_url: http://127.0.0.1:{port}
listen_addr: 127.0.0.1:{port}
metrics_listen_addr: 127.0.0.1:{metrics_port}
grpc_listen_addr: 127.0.0.1:{grpc_port}
grpc_allow_insecure: false
unix_socket: {root}/server.sock
unix_socket_permission: "0770"
disable_check_updates: true
noise:
  private_key_path: {root}/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: true
    region_id: 999
    region_code: {region_code}
    region_name: embedded test relay
    verify_clients: true
    stun_listen_addr: 127.0.0.1:{stun_port}
    private_key_path: {root}/derp_server_private.key
    automatically_add_embedded_derp_region: true
    ipv4: 127.0.0.1
  urls: []
  paths: []
  auto_update_enabled: false
database:
  type: sqlite
  sqlite:
    path: {root}/db.sqlite
    write_ahead_log: true
dns:
  magic_dns: true
  base_domain: tailnet.test
  override_local_dns: false
  nameservers:
    global: []
log:
  level: info
policy:
  mode: file
  path: ""
logtail:
  enabled: false
"""


class SharedConfigPyscale(PyscaleServer):
    """pyscale serve on the shared Headscale-format config (same ports as a Headscale would use)."""

    def __init__(self, root: Path) -> None:
        self.grpc_port = free_port()
        super().__init__(root)

    def _config_text(self) -> str:
        return server_config(self.root, self.port, self.stun_port, self.metrics_port, self.grpc_port)

    def takeover(self, other: SharedConfigPyscale) -> SharedConfigPyscale:
        """Point this (not started) server at other's config, ports, keys and database: a swap in place."""
        for attr in ("root", "port", "stun_port", "metrics_port", "grpc_port", "url", "config"):
            setattr(self, attr, getattr(other, attr))
        return self


class HeadscaleServer(SharedConfigPyscale):
    """Headscale v0.27.1 ``serve`` on the same config; the CLI is ``headscale -c CONFIG ...``."""

    def __init__(self, root: Path, binary: Path) -> None:
        self.binary = binary
        super().__init__(root)

    def start(self) -> HeadscaleServer:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [str(self.binary), "-c", str(self.config), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=client_env(),
        )
        log.close()
        wait_until("headscale /health", self._healthy, timeout=60)
        return self

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.binary), "-c", str(self.config), *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=client_env())
        if check and res.returncode != 0:
            raise AssertionError(
                f"headscale {' '.join(args)} failed ({res.returncode}): {res.stderr}{res.stdout}"
            )
        return res


class Tailscaled:
    """One real tailscaled in userspace-networking mode, driven by the real tailscale CLI."""

    def __init__(self, root: Path, name: str, tailscaled: Path, tailscale: Path, **env: str) -> None:
        self.name = name
        self.tailscaled = tailscaled
        self.tailscale = tailscale
        self.state_dir = root / f"node-{name}"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer.
        self._sock_dir = Path(tempfile.mkdtemp(prefix="ts-"))
        self.socket = self._sock_dir / "s"
        self.port = free_port(socket.SOCK_DGRAM)
        self.socks_port = free_port()
        self.http_proxy_port = free_port()
        self.log_path = root / f"tailscaled-{name}.log"
        self.env = client_env(**NODE_ENV, TS_LOGS_DIR=str(self.state_dir / "logs"), **env)
        self.proc: subprocess.Popen[bytes] | None = None
        self._death_w: int | None = None

    def start(self) -> Tailscaled:
        death_r, self._death_w = os.pipe()
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        cmd = [
            str(self.tailscaled),
            "--tun=userspace-networking",
            f"--statedir={self.state_dir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--no-logs-no-support",
            f"--socks5-server=127.0.0.1:{self.socks_port}",
            f"--outbound-http-proxy-listen=127.0.0.1:{self.http_proxy_port}",
        ]
        env = dict(self.env, TS_PARENT_DEATH_FD=str(death_r))
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, pass_fds=(death_r,), start_new_session=True
        )
        os.close(death_r)
        log.close()
        wait_until(f"tailscaled {self.name} LocalAPI", self._answers, timeout=30)
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"tailscaled {self.name} exited early:\n{self.log()}")
        return "BackendState" in self.status()

    def cli(
        self, *args: str, check: bool = True, timeout: float = CLI_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.tailscale), f"--socket={self.socket}", *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and res.returncode != 0:
            raise AssertionError(
                f"tailscale {' '.join(args)} on {self.name} failed ({res.returncode}):\n"
                f"{res.stdout}{res.stderr}\n--- tailscaled log tail:\n{self.log()[-3000:]}"
            )
        return res

    def up(self, login_server: str, auth_key: str, *extra: str) -> None:
        self.cli(
            "up",
            f"--login-server={login_server}",
            f"--authkey={auth_key}",
            f"--hostname={self.name}",
            "--accept-dns=false",
            "--timeout=60s",
            *extra,
        )

    def status(self) -> dict[str, Any]:
        res = self.cli("status", "--json", check=False, timeout=20)
        data: dict[str, Any] = json.loads(res.stdout) if res.stdout.strip().startswith("{") else {}
        return data

    def backend_state(self) -> str:
        return str(self.status().get("BackendState", ""))

    def ipv4(self) -> str:
        ips = self.status()["Self"]["TailscaleIPs"]
        return str(next(ip for ip in ips if ":" not in ip))

    def peer(self, hostname: str) -> dict[str, Any] | None:
        for peer in (self.status().get("Peer") or {}).values():
            if peer.get("HostName") == hostname:
                return dict(peer)
        return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process_group(self.proc, grace=15)
        if self._death_w is not None:
            os.close(self._death_w)
            self._death_w = None
        with contextlib.suppress(OSError):
            self.socket.unlink()
        with contextlib.suppress(OSError):
            self._sock_dir.rmdir()


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    """TCP echo on 127.0.0.1: a userspace tailscaled hands tailnet connections to its IP:port to it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.port = int(self.server_address[1])
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> EchoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


def socks5_echo(socks_port: int, host: str, port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    """Open host:port through a SOCKS5 proxy (no auth, CONNECT to an IPv4), send payload, read it back."""
    with socket.create_connection(("127.0.0.1", socks_port), timeout=timeout) as s:
        s.sendall(b"\x05\x01\x00")
        if _recv_exact(s, 2) != b"\x05\x00":
            raise ConnectionError("SOCKS5 server refused no-auth")
        s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(host) + port.to_bytes(2, "big"))
        reply = _recv_exact(s, 10)
        if reply[1] != 0:
            raise ConnectionError(f"SOCKS5 CONNECT {host}:{port} failed with code {reply[1]}")
        s.sendall(payload)
        return _recv_exact(s, len(payload))


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf
