"""What a real tailscaled v1.90.9 node sees: `tailscale status --json` and `tailscale debug netmap` of the
same two-node tailnet served by pyscale and by Headscale v0.27.1 (same config), compared after normalizing
what differs between any two runs (keys, instants, endpoints/ports). Differences are listed with their
reason in KNOWN_DIFFERENCES.md like the admin ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.compat.differential import diff, unexplained
from tests.interop.harness import wait_until
from tests.peers.tailnet import HeadscaleServer, SharedConfigPyscale, Tailscaled

pytestmark = pytest.mark.interop

KEY = re.compile(r"^(mkey|nodekey|discokey|nlpub|privkey):[0-9a-f]{64}$")
INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
HOSTPORT = re.compile(r"^(\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\]):\d+$")
# Fields that differ between two runs of the same server (the node's own ports, latency, traffic counters).
VOLATILE = {
    "Endpoints",
    "Addrs",
    "CurAddr",
    "RxBytes",
    "TxBytes",
    "LastWrite",
    "LastHandshake",
    "Created",
    "LastSeen",
    "KeyExpiry",
    "DERPLatency",
    "NetInfo",
    "ID",
    "StableID",
    "Latency",
    "PeerAPIURL",
    "InMagicSock",
    "InEngine",
    "Online",
    "Active",
    "HaveNodeKeyExpired",
    "Cap",
    "SelfNodeUnusedDERP",
    "DERPPort",
    "STUNPort",
    "Port",
}  # Port: the peerapi services listen on random ports
# Sets that Go marshals as lists in map-iteration (random) order.
SETS = {"AllCaps"}


def _norm(value: Any, key: str = "") -> Any:
    if key in VOLATILE and value not in (None, "", [], {}):
        return f"<{key}>"
    if isinstance(value, dict):
        return {KEY.sub(r"\1:<hex>", k): _norm(v, k) for k, v in value.items()}
    if isinstance(value, list):
        items = [_norm(v, key) for v in value]
        return sorted(items, key=json.dumps) if key in SETS else items
    if isinstance(value, str):
        if KEY.match(value):
            return KEY.sub(r"\1:<hex>", value)
        if INSTANT.match(value):
            return "<time>"
        if HOSTPORT.match(value):
            return "<hostport>"
    return value


def _settled_netmap(node: Tailscaled) -> dict[str, Any] | None:
    netmap: dict[str, Any] = json.loads(node.cli("debug", "netmap").stdout)
    peers = netmap.get("Peers") or []
    return netmap if peers and all(p.get("Endpoints") and p.get("HomeDERP") for p in peers) else None


def _view(server: SharedConfigPyscale, root: Path, bins: dict[str, Path], prefix: str) -> dict[str, Any]:
    nodes: list[Tailscaled] = []
    server.start()
    try:
        server.cli("users", "create", "alice")
        out = server.cli("preauthkeys", "-u", "1", "create", "--reusable", "-e", "1h").stdout
        key = out.strip().splitlines()[-1]
        for suffix in "ab":
            node = Tailscaled(root, f"{prefix}{suffix}", bins["tailscaled"], bins["tailscale"])
            nodes.append(node)
            node.start().up(server.url, key)
        a, b = nodes
        wait_until("each sees the other", lambda: a.peer(f"{prefix}b") and b.peer(f"{prefix}a"), timeout=60)
        # Compare settled views: the peer's endpoints and home DERP arrive a moment after the peer itself
        # (Headscale batches changes for 800 ms), so a snapshot taken at once could catch either server early.
        netmap = wait_until("b's endpoints and home DERP reach a", lambda: _settled_netmap(a), timeout=60)
        status = a.status()
    finally:
        for node in nodes:
            node.stop()
        server.stop()
    text = json.dumps(_norm({"status": status, "netmap": netmap}))
    return dict(json.loads(text.replace(f"{prefix}a", "nodea").replace(f"{prefix}b", "nodeb")))


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory, peer_bins: dict[str, Path]) -> Iterator[tuple[Any, Any]]:
    root = tmp_path_factory.mktemp("client-view")
    (root / "py").mkdir()
    (root / "hs").mkdir()
    py = _view(SharedConfigPyscale(root / "py"), root / "py", peer_bins, "py")
    hs = _view(HeadscaleServer(root / "hs", peer_bins["headscale"]), root / "hs", peer_bins, "hs")
    yield py, hs


@pytest.mark.parametrize("what", ["status", "netmap"])
def test_client_view_matches(views: tuple[Any, Any], what: str) -> None:
    py, hs = views
    left = unexplained([(f"client:{what}{p}", a, b) for p, a, b in diff(py[what], hs[what])])
    lines = [f"{len(left)} unexplained difference(s) in `tailscale {what}` (pyscale != headscale):"]
    lines += [f"  {p}: {json.dumps(a)[:200]} != {json.dumps(b)[:200]}" for p, a, b in left]
    assert not left, "\n".join(lines)
