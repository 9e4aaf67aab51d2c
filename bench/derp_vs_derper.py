"""Side by side: Tailscale's derper v1.90.9 and pyscale's DERP relay under the same load, in one run.

    python bench/derp_vs_derper.py --pairs 1 --size 1300 --seconds 5 [--derper-procs 1] [--stun] [--json]

Both relays run as their own processes on loopback: the real `derper` (built by tests/peers/build.py into
the peers cache, plain HTTP because its port is not 443) and `python -m derp`. The load generator, the
frame format and the measurements are bench/derp_relay.py's (closed-loop senders, byte-counting receivers,
latency from timestamps in the frames, the relay process's CPU from /proc). derper runs with
GOMAXPROCS=--derper-procs (default 1: the Python relay is one event loop on one core, so this compares
per-core; 0 leaves Go's default of every core). Prints each relay's numbers and pyscale/derper ratios.
derper drops a packet when a receiver's queue holds 32 packets (by design); the load generator's latency
samples assume nothing is lost, so a run with drops shows a nonsense p99: look at drops_during_run, and
keep --window/--batch small enough (the defaults: 32 KiB, 8 frames) for a loss-free comparison.
Numbers only; nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from derp_relay import (  # noqa: E402
    _drops,
    _free_port,
    _has_uvloop,
    _wait_http,
    bench_stun_parallel,
    cpu_seconds,
    run_load,
)

from derp.client import DerpClient  # noqa: E402
from tests.peers.build import ensure_peers  # noqa: E402

QUIET_ENV = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1"}


def derper_drops(port: int) -> dict[str, int]:
    """derper's packet drops by reason, from its Prometheus page (served to loopback clients)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/debug/varz", timeout=5).read().decode()
    out: dict[str, int] = {"max_send_queue_bytes": 0}
    for m in re.finditer(
        r'^derp_packets_dropped\{reason="([^"]+)",kind="[^"]+"\} (\d+)$', text, re.MULTILINE
    ):
        out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(2))
    return out


async def derp_load(
    args: argparse.Namespace, port: int, pid: int, drops: Callable[[], dict[str, int]]
) -> dict[str, Any]:
    """The same DERP clients against whichever relay listens on port."""
    url = f"http://127.0.0.1:{port}/derp"

    async def connect_pair(i: int) -> Any:
        rx = await DerpClient.connect(url, os.urandom(32))
        tx = await DerpClient.connect(url, os.urandom(32))
        rr, rw, initial = rx.detach()
        sr, sw, _ = tx.detach()
        return (sr, sw), (rr, rw, initial), rx.public_key

    return dict(
        await run_load(
            connect_pair, args.pairs, args.size, args.seconds, args.window, args.batch, pid, drops=drops
        )
    )


def start_derper(binary: Path, tmp: str, port: int, stun_port: int, procs: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, **QUIET_ENV)
    if procs > 0:
        env["GOMAXPROCS"] = str(procs)
    cmd = [
        str(binary),
        "-a",
        f"127.0.0.1:{port}",
        "-http-port",
        "-1",
        "-c",
        f"{tmp}/derper.json",
        "-stun" if stun_port > 0 else "-stun=false",
        "-stun-port",
        str(max(stun_port, 1)),
    ]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def start_pyscale_relay(tmp: str, port: int, stun_port: int, no_uvloop: bool) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "derp",
        "-a",
        f"127.0.0.1:{port}",
        "--stun-port",
        str(stun_port if stun_port > 0 else -1),
        "-c",
        f"{tmp}/k",
        "--stats-interval",
        "0",
    ] + (["--no-uvloop"] if no_uvloop else [])
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def measure(
    name: str, proc: subprocess.Popen[bytes], port: int, stun_port: int, args: argparse.Namespace
) -> dict[str, Any]:
    _wait_http(f"http://127.0.0.1:{port}/derp/probe", proc)
    if args.stun:
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        res: dict[str, Any] = dict(bench_stun_parallel(stun_port, args.seconds, args.stun_clients))
        res["server_cpu_fraction"] = round((cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - t0), 2)
        return res
    drops = (lambda: derper_drops(port)) if name == "derper" else (lambda: _drops(port))
    return dict(asyncio.run(derp_load(args, port, proc.pid, drops)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=1)
    p.add_argument("--size", type=int, default=1300, help="packet size in bytes")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--window", type=int, default=32 << 10, help="max bytes in flight per pair")
    p.add_argument("--batch", type=int, default=8, help="frames per sender write")
    p.add_argument("--derper-procs", type=int, default=1, help="GOMAXPROCS for derper (0: Go's default)")
    p.add_argument("--no-uvloop", action="store_true", help="run pyscale's relay on the stock asyncio loop")
    p.add_argument("--stun", action="store_true", help="compare STUN binding requests/s instead")
    p.add_argument("--stun-clients", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    derper = ensure_peers(["derper"], log=not args.json)["derper"]
    result: dict[str, Any] = {
        "pairs": args.pairs,
        "size": args.size,
        "seconds": args.seconds,
        "derper": "v1.90.9",
        "derper_gomaxprocs": args.derper_procs or os.cpu_count(),
        "pyscale_uvloop": not args.no_uvloop and _has_uvloop(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("derper", "pyscale"):
            port, stun_port = _free_port(), (_free_port() if args.stun else -1)
            if name == "derper":
                proc = start_derper(derper, tmp, port, stun_port, args.derper_procs)
            else:
                proc = start_pyscale_relay(tmp, port, stun_port, args.no_uvloop)
            try:
                result[name] = measure(name, proc, port, stun_port, args)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
    key = "stun_requests_per_s" if args.stun else "frames_per_s"
    result["ratio_pyscale_over_derper"] = round(result["pyscale"][key] / max(1, result["derper"][key]), 3)
    if not args.stun:
        per_cpu = "gbit_per_server_cpu_s"
        if result["derper"][per_cpu] > 0:
            result["ratio_per_server_cpu_s"] = round(
                result["pyscale"][per_cpu] / result["derper"][per_cpu], 3
            )
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
