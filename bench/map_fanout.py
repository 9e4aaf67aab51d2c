"""Map fan-out: how long one node's change takes to reach every connected node as a delta.

Builds State with N nodes over an in-memory store (the database is not what is measured), opens a
map session per node, then changes one node and times until every session has produced its framed
delta. Also times the full maps of the initial connect. Prints numbers (and JSON with --json);
never asserts.

    python bench/map_fanout.py --nodes 1000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyscale.keys import DiscoPublic, MachinePublic, NodePublic  # noqa: E402
from pyscale.mapper.build import MapContext, Mapper  # noqa: E402
from pyscale.mapper.session import MapSession  # noqa: E402
from pyscale.state.ipam import IPAllocator  # noqa: E402
from pyscale.state.model import ApiKey, Node, PreAuthKey, User  # noqa: E402
from pyscale.state.store import State  # noqa: E402


class MemoryStore:
    """Storage protocol in memory: ids from a counter, nothing persisted."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    async def load_users(self) -> list[User]:
        return []

    async def load_nodes(self) -> list[Node]:
        return []

    async def load_preauthkeys(self) -> list[PreAuthKey]:
        return []

    async def load_apikeys(self) -> list[ApiKey]:
        return []

    async def load_policy(self) -> str | None:
        return None

    async def ping(self) -> bool:
        return True

    async def insert_policy(self, text: str) -> int:
        return next(self._ids)

    async def _insert(self, _: object) -> int:
        return next(self._ids)

    async def _noop(self, _: object) -> None:
        return None

    insert_user = insert_node = insert_preauthkey = insert_apikey = _insert
    update_user = update_node = update_preauthkey = update_apikey = _noop
    delete_user = delete_node = delete_preauthkey = delete_apikey = _noop


def key_bytes(i: int) -> bytes:
    return i.to_bytes(4, "big") * 8


async def run(n: int) -> dict[str, float]:
    import ipaddress

    state = State(MemoryStore(), IPAllocator(ipaddress.IPv4Network("100.64.0.0/10"),
                                             ipaddress.IPv6Network("fd7a:115c:a1e0::/48")))
    user = await state.create_user("bench")
    for i in range(1, n + 1):
        await state.add_node(lambda i=i: Node(0, MachinePublic(key_bytes(i)), NodePublic(key_bytes(i)),
                                              DiscoPublic(key_bytes(i)), endpoints=[f"192.0.2.1:{i}"],
                                              hostinfo={"Hostname": f"node{i}", "OS": "linux"},
                                              hostname=f"node{i}", given_name=f"node{i}", user_id=user.id))
    mapper = Mapper(state, MapContext(domain="bench", base_domain="ts.bench", dns_config={"Proxied": True},
                                      derp_map=lambda: {"Regions": {}}))
    sessions = [MapSession(mapper, node_id, 130, state.bus.subscribe(), batch_delay=0) for node_id in state.nodes]
    streams = [s.messages() for s in sessions]
    t0 = time.perf_counter()
    full_sizes = [len(await anext(st)) for st in streams]
    t_full = time.perf_counter() - t0

    samples = []
    delta_sizes: list[int] = []
    for round_ in range(5):
        changed = next(iter(state.nodes))
        t0 = time.perf_counter()
        await state.modify_node(changed, endpoints=[f"198.51.100.{round_}:41641"])
        frames = await asyncio.gather(*(anext(st) for st in streams))
        samples.append(time.perf_counter() - t0)
        delta_sizes = [len(f) for f in frames]
    for st in streams:
        await st.aclose()
    return {
        "nodes": n,
        "full_maps_all_nodes_s": t_full,
        "full_map_bytes_median": statistics.median(full_sizes),
        "one_change_to_all_deltas_s_median": statistics.median(samples),
        "one_change_to_all_deltas_s_max": max(samples),
        "delta_bytes_median": statistics.median(delta_sizes),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = asyncio.run(run(args.nodes))
    if args.json:
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k:36} {v:.4f}" if isinstance(v, float) else f"{k:36} {v}")


if __name__ == "__main__":
    main()
