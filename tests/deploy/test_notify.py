"""sd_notify and the watchdog against a fake service manager (a unix datagram socket we own).

The real-systemd counterpart is tests/deploy/test_systemd_real.py; this one runs everywhere and
checks the ordering the unit relies on: READY=1 only once every listener answers, WATCHDOG=1
periodically from the event loop, RELOADING=1/READY=1 around SIGHUP, STOPPING=1 then exit 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from derp import stun
from pyscale import systemd
from tests.interop.harness import PyscaleServer, wait_until

WATCHDOG_USEC = 400_000  # the server pings every 0.2 s


class FakeManager:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []

    def receive(self, timeout: float) -> str | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096).decode()
        except TimeoutError:
            return None
        self.messages.append((time.monotonic(), data))
        return data

    def wait_for(self, key: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.receive(max(0.01, deadline - time.monotonic()))
            if msg is not None and key in msg.splitlines():
                return msg
        raise AssertionError(f"no {key} within {timeout}s; got {[m for _, m in self.messages]}")

    def close(self) -> None:
        self.sock.close()


def _listeners_answer(srv: PyscaleServer) -> None:
    """Every listener is bound at this instant: TCP main + metrics, the CLI unix socket, STUN."""
    for port in (srv.port, srv.metrics_port):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(srv.root / "pyscale.sock"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a STUN binding request gets an answer
        s.settimeout(2)
        txid = os.urandom(12)
        s.sendto(stun.binding_request(txid), ("127.0.0.1", srv.stun_port))
        assert stun.parse_binding_response(s.recv(1024))[0] == txid


def test_ready_watchdog_reload_stopping_exit0(tmp_path: Path) -> None:
    srv = PyscaleServer(tmp_path)
    manager = FakeManager(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(manager.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    log = open(srv.log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "pyscale.cli.main", "-c", str(srv.config), "serve"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    log.close()
    try:
        ready = manager.wait_for("READY=1")
        _listeners_answer(srv)  # right after READY=1, with no retry
        assert f"MAINPID={proc.pid}" in ready.splitlines()

        for _ in range(3):
            manager.wait_for("WATCHDOG=1", timeout=5)
        pings = [t for t, m in manager.messages if m == "WATCHDOG=1"]
        assert max(b - a for a, b in zip(pings, pings[1:], strict=False)) < WATCHDOG_USEC / 1e6

        proc.send_signal(signal.SIGHUP)
        reloading = manager.wait_for("RELOADING=1")
        assert any(line.startswith("MONOTONIC_USEC=") for line in reloading.splitlines())
        manager.wait_for("READY=1")
        wait_until("reload logged", lambda: "reloaded: DERP map" in srv.log(), timeout=10)

        good = srv.config.read_text()
        srv.config.write_text(good.replace(f"{srv.root}/pyscale.sock", f"{srv.root}/moved.sock"))
        proc.send_signal(signal.SIGHUP)
        manager.wait_for("RELOADING=1")
        manager.wait_for("READY=1")
        wait_until("restart-only key reported", lambda: "unix_socket changed; it takes effect at the next restart"
                   in srv.log(), timeout=10)
        _listeners_answer(srv)  # still on the socket it bound

        srv.config.write_text(good + "bogus_key: [unclosed\n")
        proc.send_signal(signal.SIGHUP)
        manager.wait_for("RELOADING=1")
        manager.wait_for("READY=1")
        wait_until("bad reload refused", lambda: "reload refused" in srv.log(), timeout=10)
        _listeners_answer(srv)  # the old state keeps serving

        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        manager.wait_for("STOPPING=1", timeout=5)
        assert proc.wait(10) == 0, srv.log()
        assert time.monotonic() - start < 5
        assert not (srv.root / "pyscale.sock").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        manager.close()


def test_no_notify_socket_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    assert systemd.notify("READY=1") is False
    assert systemd.watchdog_interval() == 0.5


def test_watchdog_pid_for_someone_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 0.5


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"pyscale-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.stopping()
        sock.settimeout(2)
        assert sock.recv(100) == b"STOPPING=1"


@pytest.mark.asyncio
async def test_a_blocked_loop_stops_the_pings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pings come from the event loop itself: while it is blocked, none go out."""
    manager = FakeManager(tmp_path / "n.sock")
    reader = threading.Thread(target=lambda: [manager.receive(0.2) for _ in range(15)], daemon=True)
    reader.start()
    monkeypatch.setenv("NOTIFY_SOCKET", str(manager.path))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 0.05 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    task = systemd.start_watchdog()
    assert task is not None
    try:
        await asyncio.sleep(0.3)
        blocked_from = time.monotonic()
        time.sleep(1.0)  # a hung loop
        blocked_to = time.monotonic()
        await asyncio.sleep(0.3)
    finally:
        await systemd.stop_watchdog(task)
        reader.join(5)
        manager.close()
    times = [t for t, m in manager.messages if m == "WATCHDOG=1"]
    assert sum(t < blocked_from for t in times) >= 3
    assert sum(t > blocked_to for t in times) >= 3
    assert not [t for t in times if blocked_from + 0.05 < t < blocked_to]


def test_full_manager_queue_never_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = FakeManager(tmp_path / "n.sock")  # never reads: its queue fills up
    monkeypatch.setenv("NOTIFY_SOCKET", str(manager.path))
    start = time.monotonic()
    results = [systemd.notify("WATCHDOG=1") for _ in range(200)]
    manager.close()
    assert time.monotonic() - start < 2
    assert results[0] and not results[-1]
