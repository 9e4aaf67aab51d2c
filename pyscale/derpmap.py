"""The DERP map sent to clients: the embedded region merged with ``derp.urls`` and ``derp.paths``.

Later sources override earlier ones by region id and a region set to null is removed, like
Headscale; the embedded region wins over any source with the same id. A URL that cannot be
fetched or a file that cannot be read logs a warning and never stops the server.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import yaml

log = logging.getLogger("pyscale.derpmap")

FETCH_TIMEOUT_S = 10.0
# derp.paths files are read by Headscale with yaml.v3, which lower-cases Go field names.
_FIELD_NAMES = {name.lower(): name for name in (
    "Regions", "RegionID", "RegionCode", "RegionName", "Latitude", "Longitude", "Avoid", "NoMeasureNoHome",
    "Nodes", "Name", "HostName", "CertName", "IPv4", "IPv6", "STUNPort", "STUNOnly", "DERPPort",
    "InsecureForTests", "STUNTestIP", "CanPort80", "HomeParams", "RegionScore",
)}


def embedded_region(*, server_url: str, region_id: int, region_code: str, region_name: str,
                    stun_listen_addr: str, ipv4: str = "", ipv6: str = "") -> dict[str, Any]:
    url = urlsplit(server_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    stun_port = int(stun_listen_addr.rsplit(":", 1)[-1]) if stun_listen_addr else -1
    node: dict[str, Any] = {"Name": str(region_id), "RegionID": region_id, "HostName": url.hostname or "",
                            "STUNPort": stun_port, "DERPPort": port}
    if ipv4:
        node["IPv4"] = ipv4
    if ipv6:
        node["IPv6"] = ipv6
    return {"RegionID": region_id, "RegionCode": region_code, "RegionName": region_name, "Nodes": [node]}


def _go_names(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {_FIELD_NAMES.get(str(k).lower(), k): _go_names(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_go_names(v) for v in obj]
    return obj


def load_path(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        log.warning("cannot load DERP map file %s: %s", path, exc)
        return None
    return _go_names(data) if isinstance(data, dict) else None


def fetch_url(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as resp:  # noqa: S310 - configured URL
            data = json.load(resp)
    except (OSError, ValueError) as exc:
        log.warning("cannot fetch DERP map %s: %s (keeping the other regions)", url, exc)
        return None
    return data if isinstance(data, dict) else None


def merge(sources: Iterable[dict[str, Any] | None], embedded: dict[str, Any] | None) -> dict[str, Any]:
    regions: dict[str, Any] = {}
    for source in sources:
        for rid, region in ((source or {}).get("Regions") or {}).items():
            if region is None:
                regions.pop(str(rid), None)
            else:
                regions[str(rid)] = region
    if embedded is not None:
        regions[str(embedded["RegionID"])] = embedded
    return {"Regions": regions}
