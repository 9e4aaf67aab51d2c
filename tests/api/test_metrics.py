"""Metrics: Headscale v0.27.1's names on metrics_listen_addr only, request and map-stream histograms."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pyscale import metrics
from tests.interop.harness import PyscaleServer, http_get


def _sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


def test_route_labels_follow_headscale_templates() -> None:
    assert metrics.route_label("/api/v1/node/4/tags") == "/api/v1/"
    assert metrics.route_label("/register/abc") == "/register/{registration_id}"
    assert metrics.route_label("/apple/ios") == "/apple/{platform}"
    assert metrics.route_label("/health") == "/health"
    assert metrics.route_label("/nothing/here") == "/"
    for excluded in ("/ts2021", "/machine/map", "/derp", "/derp/probe", "/bootstrap-dns"):
        assert metrics.route_label(excluded) is None


@pytest.mark.asyncio
async def test_map_stream_observer_counts_and_times() -> None:
    keepalive = b"KA"

    async def stream() -> AsyncIterator[bytes]:
        for item in (b"full", b"delta", keepalive):
            yield item

    def count(kind: str) -> float:
        text = metrics.generate_latest(metrics.EVENTS).decode()
        return _sample(text, "pyscale_mapresponse_write_seconds_count", type=kind) or 0.0

    before = {k: count(k) for k in ("full", "delta", "keepalive")}
    ended = _sample(metrics.generate_latest(metrics.EVENTS).decode(), "headscale_mapresponse_ended_total",
                    reason="done") or 0.0
    got = []
    async for message in metrics.observe_map_stream(stream(), keepalive):
        got.append(message)
        await asyncio.sleep(0)
    assert got == [b"full", b"delta", keepalive]
    assert {k: count(k) - before[k] for k in before} == {"full": 1, "delta": 1, "keepalive": 1}
    text = metrics.generate_latest(metrics.EVENTS).decode()
    assert _sample(text, "headscale_mapresponse_ended_total", reason="done") == ended + 1
    assert _sample(text, "headscale_mapresponse_sent_total", status="ok", type="keepalive") is not None


def test_real_server_metrics_listener(tmp_path: Path) -> None:
    server = PyscaleServer(tmp_path).start()
    try:
        http_get(server.url + "/health")
        assert "tailscale login --login-server " + server.url in http_get(server.url + "/windows")
        assert "HeadscaleService" not in http_get(server.url + "/swagger") and "ListNodes" in http_get(
            server.url + "/swagger")
        http_get(server.url + "/key?v=130")
        req = urllib.request.Request(server.url + "/api/v1/user", headers={"Authorization": "Bearer nope.nope"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(req, timeout=5)
        assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as not_public:
            opener.open(server.url + "/metrics", timeout=5)
        assert not_public.value.code == 404  # never on the public listener
        text = http_get(f"http://127.0.0.1:{server.metrics_port}/metrics")
        assert _sample(text, "headscale_http_requests_total", code="200", method="GET", path="/health")
        assert _sample(text, "headscale_http_requests_total", code="401", method="GET", path="/api/v1/")
        assert _sample(text, "headscale_http_duration_seconds_count", path="/key")
        for name in ("headscale_nodes_total", "headscale_online_nodes", "headscale_nodestore_nodes_total",
                     "headscale_derp_connections_total", "headscale_derp_bytes_relayed_total",
                     "process_resident_memory_bytes"):
            assert _sample(text, name) is not None, name
        for declared in ("headscale_mapresponse_sent_total", "headscale_mapresponse_ended_total",
                         "pyscale_mapresponse_write_seconds", "pyscale_mapresponse_first_seconds"):
            assert f"# TYPE {declared}" in text, declared
    finally:
        server.stop()
