"""Prometheus metrics on ``metrics_listen_addr`` (never the public listener).

Three sources, one scrape:
- State gauges read at scrape time (no polling, no double bookkeeping): the names the user's
  runbook scrapes (``headscale_nodes_total``, ``headscale_online_nodes``) and Headscale's
  ``headscale_nodestore_nodes_total``;
- the embedded relay's counters from derp.metrics (``headscale_derp_connections_total``,
  ``headscale_derp_bytes_relayed_total``);
- event metrics in a process-wide registry (like Go's default registry in Headscale) under
  Headscale v0.27.1's names: ``headscale_http_requests_total{code,method,path}``,
  ``headscale_http_duration_seconds{path}`` (path = route template; /ts2021, /machine/map, /derp*
  and /bootstrap-dns excluded, as Headscale), ``headscale_mapresponse_*``; plus pyscale's map-stream
  latency histograms ``pyscale_mapresponse_first_seconds`` (stream open -> full map ready) and
  ``pyscale_mapresponse_write_seconds{type}`` (message handed over -> written, incl. flow control).
Counters with labels show samples only once a label set was used, as in Headscale.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from pyscale.control.http1 import Request, Response
from pyscale.state.store import State

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
EVENTS = CollectorRegistry()
ProcessCollector(registry=EVENTS)  # process_* like Headscale's Go registry; python_gc_* in place of go_*
EVENTS.register(GC_COLLECTOR)

HTTP_REQUESTS = Counter("headscale_http_requests_total", "Total number of http requests processed",
                        ["code", "method", "path"], registry=EVENTS)
HTTP_DURATION = Histogram("headscale_http_duration_seconds", "Duration of HTTP requests.", ["path"],
                          registry=EVENTS)
MAPRESPONSE_SENT = Counter("headscale_mapresponse_sent_total", "total count of mapresponses sent to clients",
                           ["status", "type"], registry=EVENTS)
MAPRESPONSE_ENDPOINT_UPDATES = Counter("headscale_mapresponse_endpoint_updates_total",
                                       "total count of endpoint updates received", ["status"], registry=EVENTS)
MAPRESPONSE_ENDED = Counter("headscale_mapresponse_ended_total", "total count of new mapsessions ended",
                            ["reason"], registry=EVENTS)
MAPRESPONSE_UPDATES_RECEIVED = Counter("headscale_mapresponse_updates_received_total",
                                       "total count of mapresponse updates received on update channel", ["type"],
                                       registry=EVENTS)
MAPRESPONSE_READONLY = Counter("headscale_mapresponse_readonly_requests_total",
                               "total count of readonly requests received", ["status"], registry=EVENTS)
MAPRESPONSE_CLOSED = Counter("headscale_mapresponse_closed_total", "total count of calls to mapresponse close",
                             ["return"], registry=EVENTS)
NODESTORE_OPERATIONS = Counter("headscale_nodestore_operations_total", "Total number of NodeStore operations",
                               ["operation"], registry=EVENTS)
NODESTORE_QUEUE_DEPTH = Gauge("headscale_nodestore_queue_depth", "Current depth of NodeStore write queue",
                              registry=EVENTS)
MAP_FIRST = Histogram("pyscale_mapresponse_first_seconds", "Map stream opened until its full map was ready",
                      registry=EVENTS)
MAP_WRITE = Histogram("pyscale_mapresponse_write_seconds",
                      "A map stream message handed to the connection until the stream asked for the next",
                      ["type"], registry=EVENTS)

_EXCLUDED = re.compile(r"^/(ts2021|machine/map|derp.*|bootstrap-dns)$")
_STATIC = {"/key", "/health", "/version", "/robots.txt", "/verify", "/apple", "/windows", "/swagger",
           "/swagger/v1/openapiv2.json", "/oidc/callback"}


def route_label(path: str) -> str | None:
    """The gorilla/mux route template Headscale labels a request with; None = not measured."""
    if _EXCLUDED.match(path):
        return None
    if path in _STATIC:
        return path
    if path.startswith("/api/v1/"):
        return "/api/v1/"
    if path.startswith("/register/"):
        return "/register/{registration_id}"
    if path.startswith("/apple/"):
        return "/apple/{platform}"
    return "/"


def observe_request(method: str, path: str, status: int, seconds: float) -> None:
    label = route_label(path)
    if label is None:
        return
    HTTP_REQUESTS.labels(str(status), method, label).inc()
    HTTP_DURATION.labels(label).observe(seconds)


async def observe_map_stream(stream: AsyncIterator[bytes], keepalive: bytes) -> AsyncIterator[bytes]:
    """Pass a map stream through, timing the full map and each hand-over to the connection."""
    started = time.monotonic()
    kind = "full"
    try:
        async for message in stream:
            if kind == "full":
                MAP_FIRST.observe(time.monotonic() - started)
            elif message == keepalive:
                kind = "keepalive"
            handed = time.monotonic()
            yield message
            MAP_WRITE.labels(kind).observe(time.monotonic() - handed)
            MAPRESPONSE_SENT.labels("ok", kind).inc()
            kind = "delta"
    except (asyncio.CancelledError, GeneratorExit):
        MAPRESPONSE_ENDED.labels("cancelled").inc()
        raise
    MAPRESPONSE_ENDED.labels("done").inc()


class StateCollector:
    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        yield GaugeMetricFamily("headscale_nodes_total", "Registered nodes", value=len(self.state.nodes))
        yield GaugeMetricFamily("headscale_online_nodes", "Nodes with an open map stream",
                                value=sum(1 for n in self.state.nodes if self.state.is_online(n)))
        yield GaugeMetricFamily("headscale_nodestore_nodes_total", "Total number of nodes in the NodeStore",
                                value=len(self.state.nodes))
        yield GaugeMetricFamily("pyscale_map_streams", "Open map streams", value=sum(self.state.sessions.values()))


class _Forward:
    """Expose the process-wide event registry inside an app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        yield from self.registry.collect()


def build_registry(state: State, derp_stats: Callable[[], dict[str, int]] | None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(StateCollector(state))
    registry.register(_Forward(EVENTS))
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
