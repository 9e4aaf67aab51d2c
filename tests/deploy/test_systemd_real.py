"""pyscale under a REAL systemd 252 manager (PID 1 of its own namespaces, over an overlay of /).

deploy/install.sh installs into the box's root exactly as on a server (system user, dirs, venv
under /opt with the system Python, unit, daemon-reload, enable); only the dependencies come from
the test venv's site-packages (--deps-from) because the box is offline. The host is untouched:
the box writes to a tmpfs overlay and shares only the network (free loopback ports).

Each test leaves the service active for the next one; they run in file order on one box.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.deploy import sdbox
from tests.deploy.installenv import SITE_PACKAGES, SYSTEM_PYTHON, unusable
from tests.deploy.test_backup import WriteLoad
from tests.interop.harness import CaddyNode, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
UNIT = "pyscale.service"
ALLOW_ALL = '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}\n'
ALICE_ONLY = '{"acls": [{"action": "accept", "src": ["alice@"], "dst": ["alice@:*"]}]}\n'

pytestmark = [pytest.mark.skipif(sdbox.available() is not None, reason=f"no systemd box: {sdbox.available()}"),
              pytest.mark.skipif(unusable() is not None, reason=f"offline install impossible: {unusable()}"),
              pytest.mark.interop]


class Service:
    def __init__(self, box: sdbox.SystemdBox, root: Path) -> None:
        self.box = box
        self.root = root
        self.port = free_port()
        self.metrics_port = free_port()
        self.stun_port = free_port(socket.SOCK_DGRAM)
        self.url = f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        return f"""\
server_url: {self.url}
listen_addr: 127.0.0.1:{self.port}
metrics_listen_addr: 127.0.0.1:{self.metrics_port}
grpc_listen_addr: 127.0.0.1:0
unix_socket: /var/run/headscale/headscale.sock
unix_socket_permission: "0770"
noise:
  private_key_path: /var/lib/headscale/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
derp:
  server:
    enabled: true
    region_id: 999
    region_code: box
    region_name: box relay
    stun_listen_addr: 127.0.0.1:{self.stun_port}
    private_key_path: /var/lib/headscale/derp_server_private.key
    ipv4: 127.0.0.1
  urls: []
database:
  type: sqlite
  sqlite:
    path: /var/lib/headscale/db.sqlite
dns:
  magic_dns: true
  base_domain: tailnet.test
  override_local_dns: false
policy:
  mode: file
  path: /etc/headscale/acl.json
log:
  level: info
"""

    def show(self, prop: str) -> str:
        return self.box.run("systemctl", "show", "-p", prop, "--value", UNIT).stdout.strip()

    def main_pid(self) -> int:
        return int(self.show("MainPID"))

    def cli(self, *args: str) -> str:
        return self.box.run("pyscale", "-c", "/etc/headscale/config.yaml", *args).stdout

    def nodes(self) -> list[tuple[str, str, str]]:
        import json

        return sorted((n["given_name"], ",".join(n["ip_addresses"]), n["machine_key"])
                      for n in json.loads(self.cli("nodes", "list", "-o", "json")))

    def healthy(self) -> bool:
        with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
            return bool(resp.status == 200)

    def wait_active(self, old_pid: int = 0, timeout: float = 30) -> int:
        def ok() -> int | None:
            pid = self.main_pid()
            return pid if self.show("ActiveState") == "active" and pid not in (0, old_pid) else None

        return wait_until(f"{UNIT} active", ok, timeout=timeout)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    base = tmp_path_factory.mktemp("sdbox")
    box = sdbox.SystemdBox(base).up()
    try:
        service = Service(box, base)
        box.run("sh", "-c", "mkdir -p /etc/headscale && cat > /etc/headscale/config.yaml", input=service.config())
        box.run("sh", "-c", "cat > /etc/headscale/acl.json", input=ALLOW_ALL)
        out = box.run("sh", str(REPO / "deploy/install.sh"), "--python", SYSTEM_PYTHON,
                      "--deps-from", SITE_PACKAGES, "--no-start").stdout
        assert "could not" not in out, out
        yield service
    finally:
        box.down()


def test_start_is_ready_only_when_listening(svc: Service) -> None:
    start = time.monotonic()
    svc.box.run("systemctl", "start", UNIT)  # Type=notify: returns once READY=1 came
    took = time.monotonic() - start
    assert svc.show("ActiveState") == "active"
    assert svc.healthy()  # no retry: READY=1 means listening
    socket.create_connection(("127.0.0.1", svc.metrics_port), timeout=2).close()
    print(f"systemctl start (configtest + serve until READY=1): {took:.2f}s")
    status = svc.box.run("sh", "-c", f"cat /proc/{svc.main_pid()}/status").stdout
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M) and re.search(r"^CapEff:\s+0+$", status, re.M)
    assert re.search(r"^Uid:\s+(\d+)", status, re.M).group(1) != "0"  # type: ignore[union-attr]
    assert svc.show("StatusText").startswith("serving on")
    journal = svc.box.journal(UNIT)
    assert "OK" in journal  # ExecStartPre configtest
    assert "feeding the systemd watchdog every 15.0s" in journal


def test_real_client_logs_in(svc: Service) -> None:
    svc.cli("users", "create", "alice")
    user_id = svc.cli("users", "list", "-o", "json").split('"id":')[1].split(",")[0].strip().strip('"')
    key = svc.cli("preauthkeys", "-u", user_id, "create", "--reusable", "-e", "1h").strip()
    node = CaddyNode(svc.root, SimpleNamespace(url=svc.url), "boxnode")  # type: ignore[arg-type]
    ips = node.auth(key)
    assert ips and svc.nodes()[0][0] == "boxnode"
    svc.key = key  # type: ignore[attr-defined]


def test_kill_9_is_restarted_with_the_same_state(svc: Service) -> None:
    before = svc.nodes()
    pid = svc.main_pid()
    svc.box.run("kill", "-9", str(pid))
    new_pid = svc.wait_active(old_pid=pid)
    assert new_pid != pid and int(svc.show("NRestarts")) == 1
    assert svc.nodes() == before
    assert "status=9/KILL" in svc.box.journal(UNIT)


def _client_connections(port: int) -> set[str]:
    """Client ends (addr:port) of the host's established TCP connections to the server's port."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{port} )"], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    return {line.split()[-2] for line in out.splitlines() if line.strip()}


def test_reload_applies_a_new_policy_without_dropping_the_client(svc: Service, tmp_path: Path) -> None:
    node = CaddyNode(tmp_path, SimpleNamespace(url=svc.url), "streamer")  # type: ignore[arg-type]
    node.run(svc.key, peer="boxnode", proxy_port=free_port())  # type: ignore[attr-defined]
    try:
        wait_until("streamer online", lambda: "streamer" in svc.cli("nodes", "list") and
                   "online" in svc.cli("nodes", "list"), timeout=60)
        wait_until("streamer connected", lambda: _client_connections(svc.port), timeout=30)
        connections = _client_connections(svc.port)
        pid, restarts = svc.main_pid(), svc.show("NRestarts")
        assert "alice@" not in svc.cli("policy", "get")
        svc.box.run("sh", "-c", "cat > /etc/headscale/acl.json", input=ALICE_ONLY)
        svc.box.run("systemctl", "reload", UNIT)  # ExecReload: kill -HUP $MAINPID
        wait_until("new policy in force", lambda: "alice@" in svc.cli("policy", "get"), timeout=20)
        assert "reloaded: DERP map" in svc.box.journal(UNIT)
        assert (svc.main_pid(), svc.show("NRestarts"), svc.show("ActiveState")) == (pid, restarts, "active")
        assert connections <= _client_connections(svc.port)  # the client's map stream connection survived
        assert "online" in svc.cli("nodes", "list")

        svc.box.run("sh", "-c", "cat > /etc/headscale/acl.json", input="{ not json")
        svc.box.run("systemctl", "reload", UNIT)
        wait_until("bad policy refused", lambda: "policy reload refused" in svc.box.journal(UNIT), timeout=20)
        assert "alice@" in svc.cli("policy", "get")  # the previous policy keeps serving
        assert (svc.main_pid(), svc.show("ActiveState")) == (pid, "active")
        assert connections <= _client_connections(svc.port)
        assert node.proc is not None and node.proc.poll() is None
        svc.box.run("sh", "-c", "cat > /etc/headscale/acl.json", input=ALLOW_ALL)
    finally:
        node.stop()


def _hang_main_thread(box: sdbox.SystemdBox, pid: int) -> subprocess.Popen[str] | None:
    """Block pid's main thread (the event loop) in sleep(3) called through gdb: the process keeps running,
    its other threads too, but the loop never comes back. Without gdb, freeze the whole process (SIGSTOP)."""
    if shutil.which("gdb") is None:
        box.run("kill", "-STOP", str(pid))
        return None
    return subprocess.Popen(["nsenter", "-t", str(box.pid1), "-a", "gdb", "-p", str(pid), "-batch", "-ex",
                             "call (unsigned int)sleep(120)"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def test_hung_event_loop_is_restarted_by_the_watchdog(svc: Service) -> None:
    """WatchdogSec=4 via a drop-in; the event loop is made to hang; systemd must kill and restart it."""
    svc.box.run("sh", "-c", f"mkdir -p /etc/systemd/system/{UNIT}.d && printf '[Service]\\nWatchdogSec=4\\n' "
                f"> /etc/systemd/system/{UNIT}.d/50-test-watchdog.conf && systemctl daemon-reload")
    svc.box.run("systemctl", "restart", UNIT)
    pid = svc.wait_active()
    nodes = svc.nodes()
    gdb = _hang_main_thread(svc.box, pid)
    try:
        if gdb is not None:
            def hung() -> bool:
                try:
                    urllib.request.urlopen(svc.url + "/health", timeout=0.5).close()
                except OSError:  # timed out: the loop does not answer ...
                    state = svc.box.run("sh", "-c", f"grep ^State: /proc/{pid}/status", check=False).stdout
                    return "S (sleeping)" in state  # ... while the process runs (not stopped)
                return False

            wait_until("the event loop hung", hung, timeout=20, interval=0.05)
        new_pid = svc.wait_active(old_pid=pid, timeout=30)
    finally:
        if gdb is not None:
            gdb.kill()
            gdb.wait(10)
    assert new_pid != pid
    journal = svc.box.journal(UNIT)
    assert "Watchdog timeout" in journal and "Failed with result 'watchdog'" in journal, journal[-2000:]
    assert svc.nodes() == nodes
    svc.box.run("sh", "-c", f"rm -r /etc/systemd/system/{UNIT}.d && systemctl daemon-reload")


def test_backup_under_load_then_restore_gives_the_same_nodes(svc: Service) -> None:
    sock = f"/proc/{svc.box.pid1}/root/run/headscale/headscale.sock"
    with WriteLoad(sock, "load") as load:
        before = load.count
        svc.cli("backup", "/var/lib/headscale/backup-1")
        assert load.count > before
    nodes = svc.nodes()
    svc.cli("nodes", "delete", "-i", "1", "--force")  # a change after the backup, undone by the restore
    assert len(svc.nodes()) == len(nodes) - 1
    refused = svc.box.run("pyscale", "-c", "/etc/headscale/config.yaml", "restore", "/var/lib/headscale/backup-1",
                          check=False)
    assert refused.returncode == 1 and "a server is running" in refused.stderr
    svc.box.run("systemctl", "stop", UNIT)
    svc.cli("restore", "/var/lib/headscale/backup-1")
    owner = svc.box.run("stat", "-c", "%U %a", "/var/lib/headscale/db.sqlite").stdout.split()
    assert owner == ["headscale", "600"]
    svc.box.run("systemctl", "start", UNIT)
    assert svc.nodes() == nodes


def test_backup_timer_service_backs_up_and_prunes(svc: Service) -> None:
    """pyscale-backup.service (run now instead of at 03:00) against the live server, hardened as shipped."""
    backups = "/var/backups/headscale"
    svc.box.sh(f"mkdir {backups}/pyscale_20200101_030000 {backups}/pyscale_20200102_030000 && "
               f"touch {backups}/pyscale_20200101_030000/manifest.json && "
               f"chown -R headscale:headscale {backups} && "
               f"touch -d 2020-01-01 {backups}/pyscale_20200101_030000 {backups}/pyscale_20200102_030000")
    svc.box.run("systemctl", "start", "pyscale-backup.service", check=False)  # oneshot: returns when done
    result = svc.box.run("systemctl", "show", "-p", "Result", "--value", "pyscale-backup.service").stdout
    assert result.strip() == "success", svc.box.journal("pyscale-backup.service")
    listing = svc.box.run("ls", backups).stdout.split()
    assert "pyscale_20200101_030000" not in listing  # old and made by the script: pruned
    assert "pyscale_20200102_030000" in listing  # no manifest: not ours, left alone
    fresh = [d for d in listing if d.startswith("pyscale_2") and not d.startswith("pyscale_2020")]
    assert len(fresh) == 1
    svc.box.run("pyscale", "-c", "/etc/headscale/config.yaml", "restore", "--verify-only", f"{backups}/{fresh[0]}")
    assert svc.box.run("stat", "-c", "%U %a", f"{backups}/{fresh[0]}").stdout.split() == ["headscale", "700"]


def test_upgrade_then_rollback_to_the_previous_pyscale(svc: Service) -> None:
    nodes = svc.nodes()
    pid = svc.main_pid()
    svc.box.sh("echo previous > /opt/pyscale/MARK")
    out = svc.box.run("sh", str(REPO / "deploy/install.sh"), "--python", SYSTEM_PYTHON,
                      "--deps-from", SITE_PACKAGES).stdout  # the "upgrade": restarts the unit
    assert "kept the installed version as /opt/pyscale.prev" in out and f"{UNIT} is active" in out, out
    new_pid = svc.wait_active(old_pid=pid)
    assert svc.nodes() == nodes
    svc.box.sh("echo upgraded > /opt/pyscale/MARK")
    out = svc.box.run("sh", "/opt/pyscale/share/deploy/rollback.sh", "pyscale").stdout
    assert f"{UNIT} is active" in out, out
    svc.wait_active(old_pid=new_pid)
    assert svc.box.run("cat", "/opt/pyscale/MARK").stdout.strip() == "previous"
    assert svc.box.run("cat", "/opt/pyscale.rolled-back/MARK").stdout.strip() == "upgraded"
    assert svc.nodes() == nodes and svc.healthy()


def test_stop_is_clean_with_a_client_streaming(svc: Service, tmp_path: Path) -> None:
    node = CaddyNode(tmp_path, SimpleNamespace(url=svc.url), "streamer")  # type: ignore[arg-type]
    node.run(svc.key, peer="boxnode", proxy_port=free_port())  # type: ignore[attr-defined]
    try:
        wait_until("a map stream open", lambda: _client_connections(svc.port) and "online" in svc.cli("nodes", "list"),
                   timeout=60)
        start = time.monotonic()
        svc.box.run("systemctl", "stop", UNIT)
        took = time.monotonic() - start
        print(f"systemctl stop with a client streaming: {took:.2f}s")
        assert took < 10
        state = (svc.show("ActiveState"), svc.show("Result"), svc.show("ExecMainStatus"))
        assert state == ("inactive", "success", "0")
        journal = svc.box.journal(UNIT)
        assert "shutting down" in journal and "pyscale stopped" in journal
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", svc.port), timeout=1).close()
        assert not _client_connections(svc.port)  # the client's connections were closed, not left hanging
    finally:
        node.stop()


def _main_cmdline(box: sdbox.SystemdBox, unit: str) -> str:
    """The unit's main process command line, NULs as spaces ('' when there is none)."""
    pid = box.run("systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip()
    res = box.run("cat", f"/proc/{pid}/cmdline", check=False) if pid not in ("", "0") else None
    return res.stdout.replace("\0", " ") if res is not None and res.returncode == 0 else ""


def test_drop_in_over_a_running_headscale_and_rollback(tmp_path: Path) -> None:
    """The runbook's install (unit, user, config with its legacy keys, 750 dirs) with a stand-in Go binary
    running; install.sh --drop-in swaps pyscale in under the same unit name, then rollback.sh swaps back."""
    from tests.deploy.test_install import OLD_BINARY, _runbook_block

    box = sdbox.SystemdBox(tmp_path).up()
    try:
        ports = {8080: free_port(), 9090: free_port(), 50443: free_port(), 3478: free_port(socket.SOCK_DGRAM)}
        config = _runbook_block("yaml", "**Location**: `/etc/headscale/config.yaml`")
        for old, new in ports.items():  # the box shares the host's network: free ports, same keys
            config = config.replace(f":{old}", f":{new}")
        config = config.replace("0.0.0.0:", "127.0.0.1:").replace(
            "  urls:\n    - https://controlplane.tailscale.com/derpmap/default\n", "  urls: []\n")  # offline
        unit = _runbook_block("ini", "### systemd Unit File")
        stand_in = OLD_BINARY.decode().replace("echo", "exec sleep 100000 #")
        box.sh("useradd --system --user-group --shell /usr/sbin/nologin headscale && "
               "mkdir -p /etc/headscale /var/lib/headscale && chmod 750 /etc/headscale /var/lib/headscale")
        box.run("sh", "-c", "cat > /etc/headscale/config.yaml", input=config)
        box.run("sh", "-c", "cat > /etc/headscale/acl.json", input=_runbook_block("json", "acl.json`"))
        box.run("sh", "-c", "cat > /etc/systemd/system/headscale.service", input=unit)
        box.run("sh", "-c", "cat > /usr/local/bin/headscale && chmod 755 /usr/local/bin/headscale", input=stand_in)
        box.sh("chown -R headscale:headscale /etc/headscale /var/lib/headscale && systemctl daemon-reload && "
               "systemctl enable --now headscale")
        wait_until("the stand-in Headscale running", lambda: _main_cmdline(box, "headscale").startswith("sleep"))

        out = box.run("sh", str(REPO / "deploy/install.sh"), "--drop-in", "--python", SYSTEM_PYTHON,
                      "--deps-from", SITE_PACKAGES).stdout
        assert "headscale.service is active" in out, out
        assert box.run("systemctl", "show", "-p", "Type", "--value", "headscale").stdout.strip() == "notify"
        assert "pyscale" in _main_cmdline(box, "headscale")
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[8080]}/health", timeout=5) as resp:
            assert resp.status == 200
        box.run("headscale", "users", "create", "qui3tly")  # `headscale` is pyscale now, default config path
        assert "qui3tly" in box.run("headscale", "users", "list").stdout
        assert box.run("stat", "-c", "%U %a", "/var/lib/headscale/db.sqlite").stdout.split() == ["headscale", "600"]

        out = box.run("sh", "/opt/pyscale/share/deploy/rollback.sh", "headscale").stdout
        assert "headscale.service is active" in out, out
        wait_until("the stand-in Headscale running", lambda: _main_cmdline(box, "headscale").startswith("sleep"))
        assert box.run("cat", "/etc/systemd/system/headscale.service").stdout == unit
        assert box.run("test", "-s", "/var/lib/headscale/db.sqlite", check=False).returncode == 0
    finally:
        box.down()


HEADSCALE_BIN = Path(os.environ.get("PYSCALE_PEERS_CACHE", Path.home() / ".cache/pyscale-peers")) / \
    "headscale-v0.27.1/bin/headscale"


def _box_nodes(box: sdbox.SystemdBox) -> list[tuple[str, str]]:
    import json

    out = box.run("headscale", "nodes", "list", "-o", "json").stdout
    return sorted((n["given_name"], ",".join(sorted(n["ip_addresses"]))) for n in json.loads(out or "[]"))


def _box_healthy(url: str) -> bool:
    with urllib.request.urlopen(url + "/health", timeout=2) as resp:
        return bool(resp.status == 200)


@pytest.mark.skipif(not HEADSCALE_BIN.exists(), reason=f"no Go Headscale v0.27.1 at {HEADSCALE_BIN} "
                    "(tests/peers/build.py builds it)")
def test_drop_in_over_real_headscale_then_rollback_on_the_same_database(tmp_path: Path) -> None:
    """Headscale v0.27.1 (Go) registers a node; pyscale takes over the same files and registers another;
    rollback.sh gives the service back to Headscale, which serves both nodes from the database pyscale wrote."""
    from tests.deploy.test_install import _runbook_block

    box = sdbox.SystemdBox(tmp_path).up()
    try:
        svc = Service(box, tmp_path)
        # The runbook's unit has ProtectSystem=strict and no RuntimeDirectory: Headscale cannot create its
        # default /var/run/headscale socket there (EROFS), so both servers use a socket in the data dir.
        config = svc.config().replace("/var/run/headscale/headscale.sock", "/var/lib/headscale/headscale.sock")
        config += "disable_check_updates: true\n"
        box.sh("useradd --system --user-group --shell /usr/sbin/nologin headscale && "
               "mkdir -p /etc/headscale /var/lib/headscale && chmod 750 /etc/headscale /var/lib/headscale")
        box.run("sh", "-c", "cat > /etc/headscale/config.yaml", input=config)
        box.run("sh", "-c", "cat > /etc/headscale/acl.json", input=ALLOW_ALL)
        unit = _runbook_block("ini", "### systemd Unit File")
        box.run("sh", "-c", "cat > /etc/systemd/system/headscale.service", input=unit)
        box.sh(f"cp {HEADSCALE_BIN} /usr/local/bin/headscale && chown -R headscale:headscale /etc/headscale "
               "/var/lib/headscale && systemctl daemon-reload && systemctl enable --now headscale")
        wait_until("Go headscale healthy", lambda: _box_healthy(svc.url), timeout=60)
        box.run("headscale", "users", "create", "alice")
        key = box.run("headscale", "preauthkeys", "create", "--user", "1", "--reusable", "-e", "1h").stdout.strip()
        CaddyNode(tmp_path, SimpleNamespace(url=svc.url), "hsnode").auth(key)  # type: ignore[arg-type]
        by_headscale = _box_nodes(box)
        assert [n for n, _ in by_headscale] == ["hsnode"]

        out = box.run("sh", str(REPO / "deploy/install.sh"), "--drop-in", "--python", SYSTEM_PYTHON,
                      "--deps-from", SITE_PACKAGES).stdout
        assert "headscale.service is active" in out, out
        assert "pyscale" in _main_cmdline(box, "headscale")
        assert _box_nodes(box) == by_headscale  # same database, read by pyscale
        box.run("headscale", "users", "create", "bob")
        bob_key = box.run("headscale", "preauthkeys", "-u", "2", "create", "-e", "1h").stdout.strip()
        CaddyNode(tmp_path, SimpleNamespace(url=svc.url), "pynode").auth(bob_key)  # type: ignore[arg-type]
        by_pyscale = _box_nodes(box)
        assert [n for n, _ in by_pyscale] == ["hsnode", "pynode"]

        out = box.run("sh", "/opt/pyscale/share/deploy/rollback.sh", "headscale").stdout
        assert "headscale.service is active" in out, out
        wait_until("Go headscale healthy again", lambda: _box_healthy(svc.url), timeout=60)
        assert box.run("readlink", "-f", "/usr/local/bin/headscale").stdout.strip() == "/usr/local/bin/headscale"
        assert _box_nodes(box) == by_pyscale  # Headscale v0.27.1 serves what pyscale wrote
        assert "bob" in box.run("headscale", "users", "list").stdout
        key3 = box.run("headscale", "preauthkeys", "create", "--user", "2", "-e", "1h").stdout.strip()
        CaddyNode(tmp_path, SimpleNamespace(url=svc.url), "after").auth(key3)  # type: ignore[arg-type]
        assert [n for n, _ in _box_nodes(box)] == ["after", "hsnode", "pynode"]
        after_rollback = box.journal("headscale").split("Stopped headscale.service")[-1]
        assert "Starting Headscale" in after_rollback and "Node connected node.id=3" in after_rollback
        assert not re.search(r" (ERR|FTL|WRN) ", after_rollback), after_rollback
    finally:
        box.down()
