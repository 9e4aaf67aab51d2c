"""Rollback for real: one server stops and the other starts on the same config, keys and db.sqlite.

Headscale v0.27.1 must start on the database pyscale created and used (its schema check passes), list the
same nodes with the same addresses, and real tailscaled nodes that registered with pyscale must come back
online through it by themselves (same node key, no new login); and the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.interop.harness import wait_until
from tests.peers.tailnet import EchoServer, HeadscaleServer, SharedConfigPyscale, Tailscaled, socks5_echo

pytestmark = pytest.mark.interop


def _nodes(server: SharedConfigPyscale) -> dict[str, dict[str, Any]]:
    return {n["given_name"]: n for n in server.cli_json("nodes", "list")}


def _identity(server: SharedConfigPyscale) -> dict[str, tuple[Any, ...]]:
    """What must survive the swap: id, addresses, owner and the node key of every node."""
    return {
        name: (n["id"], tuple(n["ip_addresses"]), n["user"]["name"], n["node_key"])
        for name, n in _nodes(server).items()
    }


def _all_online(server: SharedConfigPyscale, names: set[str]) -> bool:
    nodes = _nodes(server)
    return set(nodes) == names and all(nodes[n].get("online") for n in names)


def _swap_and_check(
    first: SharedConfigPyscale, second: SharedConfigPyscale, make_node: Callable[..., Tailscaled]
) -> None:
    first.start()
    try:
        first.cli("users", "create", "alice")
        key = (
            first.cli("preauthkeys", "-u", "1", "create", "--reusable", "-e", "1h")
            .stdout.strip()
            .splitlines()[-1]
        )
        a, b = make_node("nodea"), make_node("nodeb")
        a.up(first.url, key)
        b.up(first.url, key)
        wait_until(
            "both online on the first server", lambda: _all_online(first, {"nodea", "nodeb"}), timeout=60
        )
        before = _identity(first)
        keys_before = {n.name: n.status()["Self"]["PublicKey"] for n in (a, b)}
    finally:
        first.stop()
    second.takeover(first).start()
    assert _identity(second) == before
    wait_until(
        "nodes reconnect to the second server by themselves",
        lambda: _all_online(second, {"nodea", "nodeb"}),
        timeout=120,
    )
    for node in (a, b):
        assert node.backend_state() == "Running", node.name
        assert node.status()["Self"]["PublicKey"] == keys_before[node.name], "the node logged in again"
    assert _identity(second) == before
    # And the tailnet works through the new server's map.
    ip_b = b.ipv4()
    payload = b"rollback " * 100
    with EchoServer() as echo:
        wait_until(
            "echo a -> b after the swap",
            lambda: socks5_echo(a.socks_port, ip_b, echo.port, payload) == payload,
            timeout=90,
        )


def test_headscale_takes_over_pyscale_database(
    tmp_path: Path, peer_bins: dict[str, Path], make_tailscaled: Callable[..., Tailscaled]
) -> None:
    (tmp_path / "py").mkdir()
    (tmp_path / "hs").mkdir()
    first = SharedConfigPyscale(tmp_path / "py")
    second = HeadscaleServer(tmp_path / "hs", peer_bins["headscale"])
    try:
        _swap_and_check(first, second, make_tailscaled)
    finally:
        second.stop()


def test_pyscale_takes_over_headscale_database(
    tmp_path: Path, peer_bins: dict[str, Path], make_tailscaled: Callable[..., Tailscaled]
) -> None:
    (tmp_path / "py").mkdir()
    (tmp_path / "hs").mkdir()
    first = HeadscaleServer(tmp_path / "hs", peer_bins["headscale"])
    second = SharedConfigPyscale(tmp_path / "py")
    try:
        _swap_and_check(first, second, make_tailscaled)
    finally:
        second.stop()
