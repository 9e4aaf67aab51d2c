"""Prometheus duration syntax (``30m``, ``24h``, ``90d``, ``1y``, ``1h30m``), as Headscale's
``--expiration`` flags parse it (prometheus/common/model.ParseDuration)."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_ORDER = ["y", "w", "d", "h", "m", "s", "ms"]


def parse_prom_duration(text: str) -> timedelta:
    from pyscale.cli.context import CliError

    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    units = [u for _, u in parts]
    in_order = all(_ORDER.index(a) < _ORDER.index(b) for a, b in zip(units, units[1:], strict=False))
    if text == "0":
        return timedelta(0)
    if not parts or "".join(n + u for n, u in parts) != text or not in_order:
        raise CliError(f"Could not parse duration: not a valid duration string: {text!r}\n",
                       f"not a valid duration string: {text!r}")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))
