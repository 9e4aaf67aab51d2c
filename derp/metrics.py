"""Prometheus exposition of `DerpServer.stats()` (text format, or a prometheus_client collector).

Names get a prefix (default `headscale_derp_`, so the user's scrapes of `headscale_derp_connections_total`
and `headscale_derp_bytes_relayed_total` keep working). Per-reason counters become one family with a
`reason` label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

DEFAULT_PREFIX = "headscale_derp_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LABELLED = re.compile(r"^(packets_dropped|connections_closed|stun_dropped)_(?P<reason>[a-z0-9_]+?)_total$")

Sample = tuple[str, str, dict[str, str], int]  # family, kind, labels, value


def samples(stats: dict[str, int]) -> list[Sample]:
    out: list[Sample] = []
    for name, value in sorted(stats.items()):
        m = _LABELLED.match(name)
        if m:
            out.append((m.group(1) + "_by_reason_total", "counter", {"reason": m.group("reason")}, value))
        else:
            out.append((name, "counter" if name.endswith("_total") else "gauge", {}, value))
    return out


def prometheus_text(stats: dict[str, int], *, prefix: str = DEFAULT_PREFIX) -> str:
    lines: list[str] = []
    seen: set[str] = set()
    for family, kind, labels, value in samples(stats):
        full = prefix + family
        if full not in seen:
            seen.add(full)
            lines.append(f"# TYPE {full} {kind}")
        label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        lines.append(f"{full}{{{label_text}}} {value}" if label_text else f"{full} {value}")
    return "\n".join(lines) + "\n"


class StatsCollector:
    """prometheus_client custom collector reading a stats() callable at scrape time."""

    def __init__(self, stats: Callable[[], dict[str, int]], prefix: str = DEFAULT_PREFIX) -> None:
        self._stats = stats
        self._prefix = prefix

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        families: dict[str, Any] = {}
        for family, kind, labels, value in samples(self._stats()):
            name = self._prefix + family
            if name not in families:
                if kind == "counter":
                    # prometheus_client appends _total itself
                    families[name] = CounterMetricFamily(name.removesuffix("_total"), name,
                                                         labels=list(labels))
                else:
                    families[name] = GaugeMetricFamily(name, name, labels=list(labels))
            families[name].add_metric(list(labels.values()), value)
        yield from families.values()


def register(
    registry: Any, stats: Callable[[], dict[str, int]], prefix: str = DEFAULT_PREFIX
) -> StatsCollector:
    """Register a collector for `stats` (e.g. `server.stats`) on a prometheus_client CollectorRegistry."""
    collector = StatsCollector(stats, prefix)
    registry.register(collector)
    return collector
