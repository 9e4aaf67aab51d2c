"""Issue 5 with real Go clients: a policy letting only alice reach bob, then `pyscale policy set`
allowing both ways takes effect on the running nodes without restarting anything."""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.harness import CaddyNode, PyscaleServer, free_port, http_get, wait_until

pytestmark = pytest.mark.interop

ONE_WAY = {"acls": [{"action": "accept", "src": ["alice@"], "dst": ["bob@:*"]}]}
BOTH_WAYS = {"acls": [{"action": "accept", "src": ["alice@"], "dst": ["bob@:*"]},
                      {"action": "accept", "src": ["bob@"], "dst": ["alice@:*"]}]}


@pytest.fixture
def policy_server(tmp_path: Path) -> Iterator[PyscaleServer]:
    srv = PyscaleServer(tmp_path, extra_config="policy:\n  mode: database\n").start()
    try:
        yield srv
    finally:
        srv.stop()


def _key_for(server: PyscaleServer, user: str) -> str:
    server.cli("users", "create", user)
    uid = next(u["id"] for u in server.cli_json("users", "list") if u["name"] == user)
    return server.cli("preauthkeys", "-u", str(uid), "create", "--reusable").stdout.strip()


def _reaches(port: int, expect: str) -> bool:
    return http_get(f"http://127.0.0.1:{port}/", timeout=8) == expect


def _blocked(port: int) -> bool:
    try:
        http_get(f"http://127.0.0.1:{port}/", timeout=8)
    except urllib.error.HTTPError as exc:
        return exc.code == 502  # caddy could not reach the peer through the tailnet
    except TimeoutError:
        return True
    return False


def test_policy_one_way_then_both_ways(policy_server: PyscaleServer, tmp_path: Path) -> None:
    server = policy_server
    one_way = tmp_path / "one-way.json"
    one_way.write_text(json.dumps(ONE_WAY))
    both = tmp_path / "both.json"
    both.write_text("// both directions\n" + json.dumps(BOTH_WAYS, indent=2).replace("]\n}", "],\n}"))
    assert "Policy is valid" in server.cli("policy", "check", "-f", str(both)).stdout
    alice_key, bob_key = _key_for(server, "alice"), _key_for(server, "bob")
    server.cli("policy", "set", "-f", str(one_way))
    assert json.loads(server.cli("policy", "get").stdout) == ONE_WAY

    nodes: list[CaddyNode] = []
    try:
        alice, bob = CaddyNode(tmp_path, server, "alicebox"), CaddyNode(tmp_path, server, "bobbox")
        nodes += [alice, bob]
        alice.auth(alice_key)
        bob.auth(bob_key)
        alice_port, bob_port = free_port(), free_port()
        alice.run(alice_key, "bobbox", alice_port)
        bob.run(bob_key, "alicebox", bob_port)
        wait_until("alice reaches bob", lambda: _reaches(alice_port, "hello from bobbox"), timeout=90)
        assert _blocked(bob_port), "bob reached alice although the policy only allows alice -> bob"

        server.cli("policy", "set", "-f", str(both))
        wait_until("bob reaches alice after policy set", lambda: _reaches(bob_port, "hello from alicebox"),
                   timeout=60)
        assert _reaches(alice_port, "hello from bobbox")
    finally:
        for node in nodes:
            node.stop()
    bad = tmp_path / "bad.json"
    bad.write_text('{"acls": [{"action": "accept", "src": ["nobody-group"], "dst": ["*:*"]}],}')
    res = server.cli("policy", "set", "-f", str(bad), check=False)
    assert res.returncode == 1 and "database:1:" in res.stderr, res.stderr  # position of the error
    assert server.cli("policy", "get").stdout.strip() == both.read_text().strip()  # the old policy still serves
