"""CLI output like Headscale v0.27.1's: pterm-style tables, or ``-o json|json-line|yaml``.

Headscale prints its protobuf structs with Go's encoding/json (snake_case keys, omitempty,
numeric ids and enums, timestamps as {seconds, nanos}); ``cli_shape`` converts the REST
(protojson) form the server returns into that shape.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import yaml

from pyscale.tailcfg.timefmt import TimeFormatError, parse_time

ENUMS = {"REGISTER_METHOD_UNSPECIFIED": 0, "REGISTER_METHOD_AUTH_KEY": 1, "REGISTER_METHOD_CLI": 2,
         "REGISTER_METHOD_OIDC": 3}
_ID_KEYS = {"id"}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT")


def snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def _timestamp(text: str) -> dict[str, int]:
    t = parse_time(text)
    epoch = (t - datetime(1970, 1, 1, tzinfo=t.tzinfo)).total_seconds()
    seconds = int(epoch // 1)
    return {"seconds": seconds, "nanos": t.microsecond * 1000}


def cli_shape(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            converted = cli_shape(v, k)
            if converted in (None, False, "", 0, [], {}):
                continue  # Go omitempty
            out[snake(k)] = converted
        return out
    if isinstance(value, list):
        return [cli_shape(v) for v in value]
    if isinstance(value, str):
        if key in _ID_KEYS and value.isdigit():
            return int(value)
        if value in ENUMS:
            return ENUMS[value]
        if _TIMESTAMP.match(value):
            try:
                return _timestamp(value)
            except TimeFormatError:
                return value
    return value


def render(obj: Any, fmt: str) -> str:
    shaped = cli_shape(obj)
    if fmt == "json":
        return json.dumps(shaped, indent="\t")
    if fmt == "json-line":
        return json.dumps(shaped, separators=(",", ":"))
    if fmt == "yaml":
        return yaml.safe_dump(_yaml_keys(shaped), sort_keys=False).rstrip("\n")
    raise ValueError(f"unknown output format {fmt!r}")


def _yaml_keys(value: Any) -> Any:
    """yaml.v3 on Go structs lower-cases field names without separators (``machinekey``)."""
    if isinstance(value, dict):
        return {k.replace("_", ""): _yaml_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml_keys(v) for v in value]
    return value


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def local_time(text: str | None) -> str:
    if not text:
        return ""
    t = parse_time(text)
    if t.year == 1:
        return "0001-01-01 00:00:00"
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S")
