"""Fixtures for tests that run the real Go programs (built once into the peers cache on first use).

Imported by the conftest.py of each test directory that uses them (tests/peers, tests/compat)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.peers.build import PeerBuildError, ensure_peers
from tests.peers.tailnet import HeadscaleServer, SharedConfigPyscale, Tailscaled


@pytest.fixture(scope="session")
def peer_bins(request: pytest.FixtureRequest) -> dict[str, Path]:
    """Paths of tailscale, tailscaled, derper and headscale; builds them on first use (minutes, once).

    What is built and how long it took goes straight to the terminal (a cold build takes minutes), and
    nothing is printed when every peer is cached.
    """
    capture = request.config.pluginmanager.getplugin("capturemanager")
    try:
        if capture is None:
            return ensure_peers(show_cached=False)
        with capture.global_and_fixture_disabled():
            return ensure_peers(show_cached=False)
    except PeerBuildError as exc:  # a missing Go or module is a failure to report, not a skip
        pytest.fail(f"cannot build the reference peers: {exc}")


@pytest.fixture
def pyscale(tmp_path: Path) -> Iterator[SharedConfigPyscale]:
    root = tmp_path / "pyscale"
    root.mkdir()
    srv = SharedConfigPyscale(root)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def headscale(tmp_path: Path, peer_bins: dict[str, Path]) -> Iterator[HeadscaleServer]:
    root = tmp_path / "headscale"
    root.mkdir()
    srv = HeadscaleServer(root, peer_bins["headscale"]).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def make_tailscaled(tmp_path: Path, peer_bins: dict[str, Path]) -> Iterator[Callable[..., Tailscaled]]:
    """Factory: ``make_tailscaled("nodea", TS_DEBUG_ALWAYS_USE_DERP="true")`` starts one tailscaled."""
    nodes: list[Tailscaled] = []

    def factory(name: str, **env: str) -> Tailscaled:
        node = Tailscaled(tmp_path, name, peer_bins["tailscaled"], peer_bins["tailscale"], **env)
        nodes.append(node)
        return node.start()

    try:
        yield factory
    finally:
        for node in nodes:
            node.stop()
