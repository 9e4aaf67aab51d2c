"""Prometheus metrics on ``metrics_listen_addr`` (never the public listener).

Gauges are read from State at scrape time (no polling, no double bookkeeping); the embedded
relay's counters come from derp.metrics under the names the user's dashboards scrape
(``headscale_derp_connections_total``, ``headscale_derp_bytes_relayed_total``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from pyscale.control.http1 import Request, Response
from pyscale.state.store import State

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StateCollector:
    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        yield GaugeMetricFamily("headscale_nodes_total", "Registered nodes", value=len(self.state.nodes))
        yield GaugeMetricFamily("headscale_online_nodes", "Nodes with an open map stream",
                                value=sum(1 for n in self.state.nodes if self.state.is_online(n)))
        yield GaugeMetricFamily("headscale_nodestore_nodes_total", "Nodes in the node store",
                                value=len(self.state.nodes))
        yield GaugeMetricFamily("pyscale_map_streams", "Open map streams", value=sum(self.state.sessions.values()))


def build_registry(state: State, derp_stats: Callable[[], dict[str, int]] | None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(StateCollector(state))
    if derp_stats is not None:
        from derp.metrics import StatsCollector

        registry.register(StatsCollector(derp_stats))
    return registry


class MetricsRoute:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    async def __call__(self, req: Request) -> Response:
        if req.path != "/metrics":
            return Response(404)
        return Response(200, generate_latest(self.registry), [("Content-Type", CONTENT_TYPE)])
