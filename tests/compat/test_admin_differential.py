"""Differential test of the admin verbs pyscale does not have yet (issue 8): subnet routes advertised by a
real node and approved, forced tags, API keys.

Written against Headscale v0.27.1 first: the Headscale run must succeed and show the expected effects; the
same scenario on pyscale must then give the same (normalized) answers. That part is expected to fail until
issue 8 lands, strictly: once it passes, the marker must go.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.compat.differential import diff, normalize, run_admin_scenario, unexplained
from tests.peers.tailnet import HeadscaleServer, SharedConfigPyscale, Tailscaled

pytestmark = pytest.mark.interop


def _run(server: SharedConfigPyscale, root: Path, bins: dict[str, Path], prefix: str) -> dict[str, Any]:
    nodes: list[Tailscaled] = []

    def make_node(name: str, **env: str) -> Tailscaled:
        node = Tailscaled(root, name, bins["tailscaled"], bins["tailscale"], **env)
        nodes.append(node)
        return node.start()

    server.start()
    try:
        outputs = run_admin_scenario(server, make_node, prefix).outputs
    finally:
        for node in nodes:
            node.stop()
        server.stop()
    unified = json.dumps(normalize(outputs)).replace(f'"{prefix}r"', '"router"')
    result: dict[str, Any] = json.loads(unified)
    return result


@pytest.fixture(scope="module")
def headscale_answers(tmp_path_factory: pytest.TempPathFactory, peer_bins: dict[str, Path]) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("admin-hs")
    yield _run(HeadscaleServer(root, peer_bins["headscale"]), root, peer_bins, "hs")


def test_headscale_admin_scenario(headscale_answers: dict[str, Any]) -> None:
    """The reference behaves as the scenario expects (so the comparison below compares something)."""
    routes = headscale_answers["nodes list-routes approved"][0]
    assert routes["approved_routes"] == ["10.9.0.0/24"] and routes["subnet_routes"] == ["10.9.0.0/24"]
    assert headscale_answers["nodes list --tags"][0]["forced_tags"] == ["tag:test"]
    assert headscale_answers["apikeys create"] == "<apikey>"
    assert len(headscale_answers["apikeys list"]) == 1


def test_pyscale_admin_scenario_matches(
    tmp_path: Path, peer_bins: dict[str, Path], headscale_answers: dict[str, Any]
) -> None:
    py = _run(SharedConfigPyscale(tmp_path), tmp_path, peer_bins, "py")
    left = unexplained(
        [
            (f"cli:{step}{path}", a, b)
            for step in headscale_answers
            for path, a, b in diff(py.get(step), headscale_answers[step])
        ]
    )
    assert not left, "\n".join(f"{p}: {json.dumps(a)} != {json.dumps(b)}" for p, a, b in left)
