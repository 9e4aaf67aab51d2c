"""Config -> nested dict with Headscale's YAML key names and file-form values (the inverse of loading).

Used to show the effective configuration (defaults, legacy mappings and environment overrides applied),
and by the tests to prove that every field round-trips through the file format unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from pyscale.config.build import section_type, yaml_name
from pyscale.config.model import Config

_GO_UNITS = (("h", 3600.0), ("m", 60.0))


def format_go_duration(seconds: float) -> str:
    """Seconds -> Go duration text that parse_go_duration reads back exactly (e.g. 5400 -> "1h30m")."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    rest = abs(seconds)
    if rest < 1:
        return f"{sign}{_num(rest * 1000)}ms"
    out = []
    for unit, size in _GO_UNITS[:2]:
        whole = math.floor(rest / size)
        if whole:
            out.append(f"{whole}{unit}")
            rest -= whole * size
    if rest:
        out.append(f"{_num(rest)}s")
    return sign + "".join(out)


def _num(x: float) -> str:
    return f"{x:.9f}".rstrip("0").rstrip(".")


def format_prom_duration(seconds: float) -> str:
    if math.isinf(seconds):
        return "0"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds * 1000)}ms"


def _raw(kind: str, value: Any) -> Any:
    if kind == "duration":
        return format_go_duration(value)
    if kind == "promduration":
        return format_prom_duration(value)
    if kind in ("prefix4", "prefix6"):
        return "" if value is None else str(value)
    if kind == "filemode":
        return f"{value:04o}"
    if kind == "strlist":
        return list(value)
    if kind == "splitmap":
        return {k: list(v) for k, v in value.items()}
    if kind == "strmap":
        return dict(value)
    if kind == "records":
        return [dict(r) for r in value]
    return value


def dump_config(cfg: Config) -> dict[str, Any]:
    """The effective configuration as a YAML-ready nested dict (current key names only)."""
    return _dump(cfg)


def _dump(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cls = type(obj)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if section_type(cls, f) is not None:
            out[yaml_name(f)] = _dump(value)
        elif "kind" in f.metadata:
            out[yaml_name(f)] = _raw(str(f.metadata["kind"]), value)
    return out
