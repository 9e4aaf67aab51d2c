"""HTTP routes, the 101 bytes, /derpmap and /metrics of the standalone front."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from relay_helpers import running_relay

from derp import http as derp_http
from derp import metrics
from derp.standalone import BadRequest, one_region_map, parse_head


def test_upgrade_response_matches_vector(derp_vector: dict[str, Any]) -> None:
    pub = bytes.fromhex(derp_vector["server_keys"]["public_hex"])
    for conn in derp_vector["connections"]:
        assert derp_http.upgrade_response(pub).decode() == conn["server_response_raw_text"]
        request = parse_head(conn["upgrade_request_raw_text"].encode()[:-4])
        assert (request.method, request.target) == ("GET", "/derp")
        assert derp_http.upgrade_kind(request.headers) == "derp"
        assert not derp_http.is_fast_start(request.headers)


def test_routes() -> None:
    probe = derp_http.route("GET", "/derp/probe")
    assert probe is not None and probe.status == 200 and ("Access-Control-Allow-Origin", "*") in probe.headers
    latency = derp_http.route("HEAD", "/derp/latency-check")
    assert latency is not None and latency.status == 200
    bad = derp_http.route("POST", "/derp/probe")
    assert bad is not None and bad.status == 405
    nc = derp_http.route("GET", "/generate_204", [("X-Tailscale-Challenge", "abc123")])
    assert nc is not None and nc.status == 204 and ("X-Tailscale-Response", "response abc123") in nc.headers
    assert derp_http.route("GET", "/other") is None
    assert derp_http.upgrade_kind([("Upgrade", "WebSocket")]) == "websocket"
    assert derp_http.upgrade_kind([("Upgrade", "h2c")]) is None
    assert derp_http.upgrade_required().status == 426


def test_parse_head_rejects_garbage() -> None:
    for head in (b"GET /", b"GET / SPDY/3", b"GET / HTTP/1.1\r\nno colon"):
        with pytest.raises(BadRequest):
            parse_head(head)


def test_metrics_text_and_registry() -> None:
    stats = {"connections_total": 3, "bytes_relayed_total": 10, "connections_current": 1,
             "packets_dropped_queue_full_total": 2, "packets_dropped_total": 2}
    text = metrics.prometheus_text(stats)
    assert "headscale_derp_connections_total 3\n" in text
    assert "headscale_derp_bytes_relayed_total 10\n" in text
    assert "# TYPE headscale_derp_connections_current gauge" in text
    assert 'headscale_derp_packets_dropped_by_reason_total{reason="queue_full"} 2' in text
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.CollectorRegistry()
    metrics.register(registry, lambda: stats)
    assert registry.get_sample_value("headscale_derp_connections_total") == 3
    assert registry.get_sample_value("headscale_derp_bytes_relayed_total") == 10
    assert registry.get_sample_value("headscale_derp_packets_dropped_by_reason_total",
                                     {"reason": "queue_full"}) == 2


async def _get(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


@pytest.mark.asyncio
async def test_front_serves_routes_over_tcp() -> None:
    async with running_relay() as relay:
        out = await _get(relay.port, b"GET /derp/probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200 OK\r\n")
        out = await _get(relay.port, b"GET /derp HTTP/1.1\r\nHost: x\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 426 ")
        out = await _get(relay.port, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert b"headscale_derp_connections_total" in out
        out = await _get(relay.port, b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 404 ")


def test_one_region_map_shape(derp_vector: dict[str, Any]) -> None:
    m = one_region_map(region_id=900, region_code="py", region_name="pyscale-test", host="127.0.0.1",
                       derp_port=18091, stun_port=-1, ipv4="127.0.0.1", ipv6="none")
    # the same map tailcat was fed when the vector was captured
    served = derp_vector["derpmap_fetches"][0]["raw_response_text"].split("\r\n\r\n", 1)[1]
    assert json.dumps(m) == served
