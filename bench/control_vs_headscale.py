"""Side by side: pyscale and Headscale v0.27.1 as the control server of N real tailscaled v1.90.9 nodes.

    python bench/control_vs_headscale.py --nodes 6 [--rounds 3] [--json]

For each server in turn (same config file text, fresh state, everything on loopback): start N tailscaled
(userspace networking; not timed), then time
  - join: `tailscale up --authkey` on all N at once until every node's `status --json` lists the N-1 others;
  - rename: `nodes rename` of one node until every other node shows the new name (a delta reaching N-1 map
    streams), --rounds times, median;
and report the server process's CPU seconds over the whole run and its peak RSS (VmHWM). Programs come from
tests/peers/build.py's cache. Numbers only; nothing here asserts timings. On a shared 2-core machine the N
tailscaled processes compete with the server: compare the two servers within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.derp_relay import cpu_seconds  # noqa: E402
from tests.interop.harness import wait_until  # noqa: E402
from tests.peers.build import ensure_peers  # noqa: E402
from tests.peers.tailnet import HeadscaleServer, SharedConfigPyscale, Tailscaled  # noqa: E402


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return -1.0


def peer_names(node: Tailscaled) -> set[str]:
    peers = (node.status().get("Peer") or {}).values()
    return {str(p.get("DNSName", "")).split(".")[0] for p in peers}


def _seen_by_others(nodes: list[Tailscaled], new: str) -> bool:
    return sum(new in peer_names(node) for node in nodes) == len(nodes) - 1


def run_one(
    server: SharedConfigPyscale, bins: dict[str, Path], root: Path, n: int, rounds: int
) -> dict[str, Any]:
    nodes: list[Tailscaled] = []
    server.start()
    assert server.proc is not None
    pid = server.proc.pid
    cpu0 = cpu_seconds(pid)
    try:
        server.cli("users", "create", "bench")
        key = (
            server.cli("preauthkeys", "-u", "1", "create", "--reusable", "-e", "1h")
            .stdout.strip()
            .splitlines()[-1]
        )
        with ThreadPoolExecutor(max_workers=n) as pool:
            nodes = list(
                pool.map(
                    lambda i: Tailscaled(root, f"n{i}", bins["tailscaled"], bins["tailscale"]).start(),
                    range(n),
                )
            )
            t0 = time.perf_counter()
            list(pool.map(lambda node: node.up(server.url, key), nodes))
            up_s = time.perf_counter() - t0
            names = {f"n{i}" for i in range(n)}
            wait_until(
                "every node sees every other",
                lambda: all(peer_names(node) >= names - {node.name} for node in nodes),
                timeout=300,
                interval=0.05,
            )
            join_s = time.perf_counter() - t0
            renames = []
            for r in range(rounds):
                new = f"renamed{r}"
                t1 = time.perf_counter()
                server.cli("nodes", "rename", "-i", "1", new)
                # node id 1 is whichever `up` won the race: every *other* node must see the new name
                wait_until(f"rename {new} seen by all", partial(_seen_by_others, nodes, new), 120, 0.05)
                renames.append(time.perf_counter() - t1)
        return {
            "nodes": n,
            "all_up_returned_s": round(up_s, 2),
            "join_converged_s": round(join_s, 2),
            "rename_propagated_median_s": round(statistics.median(renames), 3),
            "server_cpu_s": round(cpu_seconds(pid) - cpu0, 2),
            "server_peak_rss_mb": peak_rss_mb(pid),
        }
    finally:
        for node in nodes:
            node.stop()
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    bins = ensure_peers(["tailscale", "tailscaled", "headscale"], log=not args.json)
    result: dict[str, Any] = {"python": sys.version.split()[0], "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("pyscale", "headscale"):
            root = Path(tmp) / name
            root.mkdir()
            server = (
                SharedConfigPyscale(root) if name == "pyscale" else HeadscaleServer(root, bins["headscale"])
            )
            result[name] = run_one(server, bins, root, args.nodes, args.rounds)
    for key in ("join_converged_s", "rename_propagated_median_s", "server_cpu_s", "server_peak_rss_mb"):
        result[f"ratio_{key}_pyscale_over_headscale"] = round(
            result["pyscale"][key] / max(result["headscale"][key], 1e-9), 2
        )
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
