"""Build the Go reference peers (tailscale, tailscaled, derper, headscale) into a cache outside the repo.

Run as a script (``python tests/peers/build.py``) or import :func:`ensure_peers`. Every program is pinned;
a program already present in the cache at its pinned version is not rebuilt, so a second run does nothing.
Go's own module and build caches are pointed outside the repository too, next to the binaries, unless
the caller already set ``GOMODCACHE``/``GOCACHE``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TAILSCALE_VERSION = "v1.90.9"
HEADSCALE_VERSION = "v0.27.1"
CACHE_ENV = "PYSCALE_PEERS_CACHE"
# A cold build of all four programs took ~17 minutes on 2 busy shared cores here; leave ample room.
BUILD_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Peer:
    name: str
    package: str
    version: str

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"


PEERS: tuple[Peer, ...] = (
    Peer("tailscale", "tailscale.com/cmd/tailscale", TAILSCALE_VERSION),
    Peer("tailscaled", "tailscale.com/cmd/tailscaled", TAILSCALE_VERSION),
    Peer("derper", "tailscale.com/cmd/derper", TAILSCALE_VERSION),
    Peer("headscale", "github.com/juanfont/headscale/cmd/headscale", HEADSCALE_VERSION),
)


class PeerBuildError(RuntimeError):
    """Go or a pinned module could not be had; the message names what is missing."""


def cache_root() -> Path:
    """Root of the peers cache: ``$PYSCALE_PEERS_CACHE`` or ``~/.cache/pyscale-peers``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "pyscale-peers"


def bin_dir(peer: Peer, root: Path | None = None) -> Path:
    """Versioned bin directory for one peer: pinning lives in the path, so a version bump rebuilds."""
    return (root or cache_root()) / f"{peer.name}-{peer.version}" / "bin"


def binary_path(name: str, root: Path | None = None) -> Path:
    peer = _peer(name)
    return bin_dir(peer, root) / peer.name


def _peer(name: str) -> Peer:
    for peer in PEERS:
        if peer.name == name:
            return peer
    raise KeyError(name)


def find_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise PeerBuildError(
            "the Go toolchain ('go') is not on PATH: install Go >= 1.25 to build the reference peers "
            + ", ".join(p.spec for p in PEERS)
        )
    return go


def go_env(root: Path, gobin: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env["GOBIN"] = str(gobin)
    env.setdefault("GOMODCACHE", str(root / "gomodcache"))
    env.setdefault("GOCACHE", str(root / "gocache"))
    env["GOFLAGS"] = "-buildvcs=false -modcacherw"
    # Never let the build look at the repo's (absent) go.mod or pick up a workspace.
    env["GO111MODULE"] = "on"
    env["GOWORK"] = "off"
    return env


def _run_go(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["nice", "-n", "19", *cmd],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerBuildError(f"{' '.join(cmd)} did not finish within {BUILD_TIMEOUT_S:.0f}s") from exc


def _install_via_wrapper(
    go: str, peer: Peer, root: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Build inside a throwaway module that requires the pinned version.

    ``go install pkg@version`` also asks the proxy for the module's version list (to report deprecation);
    a proxy that serves the pinned version but refuses the list (403) fails that install although the
    module itself is there. A main module that requires the exact version never asks for the list, and
    minimal version selection picks the same dependency versions as the module's own go.mod.
    """
    wrapper = bin_dir(peer, root).parent / "mod"
    wrapper.mkdir(parents=True, exist_ok=True)
    module = peer.package.split("/cmd/")[0]
    (wrapper / "go.mod").write_text(
        f"module pyscalepeers/{peer.name}\n\ngo 1.25\n\nrequire {module} {peer.version}\n"
    )
    (wrapper / "tools.go").write_text(f'//go:build tools\n\npackage tools\n\nimport _ "{peer.package}"\n')
    out = str(bin_dir(peer, root) / peer.name)
    return _run_go([go, "build", "-mod=mod", "-trimpath", "-o", out, peer.package], wrapper, env)


def _build_one(go: str, peer: Peer, root: Path, log: bool) -> float:
    gobin = bin_dir(peer, root)
    gobin.mkdir(parents=True, exist_ok=True)
    if log:
        print(f"building {peer.spec} -> {gobin / peer.name}", flush=True)
    start = time.monotonic()
    env = go_env(root, gobin)
    proc = _run_go([go, "install", "-trimpath", peer.spec], root, env)
    if proc.returncode != 0 and "@v/list" in proc.stderr:
        if log:
            module = peer.package.split("/cmd/")[0]
            print(
                f"  the proxy refuses {module}'s version list; building {peer.version} in a wrapper module",
                flush=True,
            )
        proc = _install_via_wrapper(go, peer, root, env)
    elapsed = time.monotonic() - start
    if proc.returncode != 0 or not (gobin / peer.name).exists():
        raise PeerBuildError(
            f"building {peer.spec} failed (exit {proc.returncode}): Go module or toolchain missing?\n"
            + proc.stderr.strip()[-4000:]
        )
    if log:
        print(f"built {peer.name} {peer.version} in {elapsed:.1f}s", flush=True)
    return elapsed


def ensure_peers(
    names: list[str] | None = None, *, log: bool = True, show_cached: bool = True
) -> dict[str, Path]:
    """Make sure the named peers (default: all) are built; returns name -> binary path.

    Raises PeerBuildError naming what is missing when Go or a module cannot be had.
    """
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    wanted = [_peer(n) for n in names] if names else list(PEERS)
    out: dict[str, Path] = {}
    go: str | None = None
    total = 0.0
    for peer in wanted:
        path = bin_dir(peer, root) / peer.name
        if path.exists():
            if log and show_cached:
                print(f"cached {peer.spec}: {path}", flush=True)
        else:
            go = go or find_go()
            total += _build_one(go, peer, root, log)
        out[peer.name] = path
    if log and total:
        print(f"peers built in {total:.1f}s total (cache {root})", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", help="peers to build (default: all): " + ", ".join(p.name for p in PEERS)
    )
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        paths = ensure_peers(args.names or None)
    except PeerBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}\t{path}")
    print(f"done in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
