"""build.py: idempotent (a cached peer never runs Go) and clear about what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peers import build


def test_second_run_builds_nothing(peer_bins: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_go() -> str:
        raise AssertionError("Go was invoked although every peer is cached")

    monkeypatch.setattr(build, "find_go", no_go)
    assert build.ensure_peers(log=False) == peer_bins
    assert all(path.is_file() and path.stat().st_mode & 0o111 for path in peer_bins.values())


def test_missing_go_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no go here
    missing = r"Go toolchain \('go'\) is not on PATH.*tailscale.com/cmd/tailscale"
    with pytest.raises(build.PeerBuildError, match=missing):
        build.ensure_peers(["tailscale"], log=False)


def test_pinned_versions_live_in_the_cache_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    assert build.binary_path("tailscaled") == tmp_path / "tailscaled-v1.90.9" / "bin" / "tailscaled"
    assert build.binary_path("headscale") == tmp_path / "headscale-v0.27.1" / "bin" / "headscale"
    assert not str(build.cache_root()).startswith(str(Path(build.__file__).parents[2]))
