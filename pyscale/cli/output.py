"""CLI output like Headscale v0.27.1's: pterm-style tables, or ``-o json|json-line|yaml``.

Headscale prints its protobuf Go structs, so the machine formats differ from the REST dialect:
- json / json-line (encoding/json): snake_case keys, ``omitempty`` (zero values dropped), ids
  and enums as numbers, Timestamps as ``{"seconds": s, "nanos": n}`` (zero parts dropped), an
  empty list response printed as ``null``, ``<>&`` escaped as ``\\u003c`` etc., tab indent.
- yaml (yaml.v3): keys are the Go field names lower-cased (``machinekey``), every field present,
  Timestamps ``{seconds, nanos}``, 4-space indent.
``cli_shape`` converts the REST (protojson) form the server returns into those shapes. The
extra Node ``tags`` key pyscale serves over REST is not part of 0.27.1's structs and is dropped.
Tables show times in UTC (Headscale formats ``Timestamp.AsTime()``, which is UTC).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import yaml

from pyscale.tailcfg.timefmt import TimeFormatError, parse_time

ENUMS = {"REGISTER_METHOD_UNSPECIFIED": 0, "REGISTER_METHOD_AUTH_KEY": 1, "REGISTER_METHOD_CLI": 2,
         "REGISTER_METHOD_OIDC": 3}
_ID_KEYS = {"id"}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_REST_ONLY = {"tags"}  # keys pyscale adds to REST Node beyond 0.27.1's message


def snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def _timestamp(text: str, omitempty: bool) -> dict[str, int]:
    t = parse_time(text)
    delta = t - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    ts = {"seconds": seconds, "nanos": delta.microseconds * 1000}
    return {k: v for k, v in ts.items() if v} if omitempty else ts


def cli_shape(value: Any, key: str = "", *, yaml_keys: bool = False) -> Any:
    """REST JSON -> the Go struct as encoding/json (default) or yaml.v3 (``yaml_keys``) prints it."""
    omitempty = not yaml_keys
    if isinstance(value, dict):
        out = {}
        is_node = "givenName" in value
        for k, v in value.items():
            if is_node and k in _REST_ONLY:
                continue
            converted = cli_shape(v, k, yaml_keys=yaml_keys)
            if omitempty and (converted is None or converted is False or converted in ("", 0, [], {})):
                continue
            out[k.lower() if yaml_keys else snake(k)] = converted
        return out
    if isinstance(value, list):
        return [cli_shape(v, yaml_keys=yaml_keys) for v in value]
    if isinstance(value, str):
        if key in _ID_KEYS and value.isdigit():
            return int(value)
        if value in ENUMS:
            return ENUMS[value]
        if _TIMESTAMP.match(value):
            try:
                return _timestamp(value, omitempty)
            except TimeFormatError:
                return value
    return value


def go_json(value: Any, indent: bool) -> str:
    text = json.dumps(value, indent="\t" if indent else None, separators=None if indent else (",", ":"),
                      ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def render(obj: Any, fmt: str) -> str:
    """A response message or list, as Headscale's SuccessOutput prints it."""
    if fmt == "yaml":
        return go_yaml(cli_shape(obj, yaml_keys=True))
    shaped = cli_shape(obj)
    if isinstance(obj, list) and not obj:
        shaped = None  # a nil Go slice
    if fmt == "json":
        return go_json(shaped, True)
    if fmt == "json-line":
        return go_json(shaped, False)
    raise ValueError(f"unknown output format {fmt!r}")


def render_plain(obj: Any, fmt: str) -> str:
    """A plain Go map/struct (errors, {"private_key": ...}): no proto conversion."""
    if fmt == "yaml":
        return go_yaml(obj)
    return go_json(obj, fmt == "json")


# ---- yaml.v3 ----------------------------------------------------------------------------------
# yaml.v3 (libyaml's emitter, 4-space indent): nested mappings and sequences are indented by 4,
# sequences inside mappings too; a mapping that is a sequence item starts on the dash's line at
# the item's indent ("-   key: v"). Strings that would read back as another type are double-quoted,
# other unsafe plain strings single-quoted, as the emitter falls back.

YAML_INDENT = 4
_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    if tag != _STR_TAG:  # would read back as null, bool or a number
        return json.dumps(text, ensure_ascii=False)
    dumped = yaml.safe_dump(text, allow_unicode=True, width=10**9).removesuffix("\n...\n").rstrip("\n")
    return dumped


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def _block(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                lines.append(f"{pad}{k}:")
                lines += _block(v, indent + YAML_INDENT)
            else:
                lines.append(f"{pad}{k}: {_inline(v)}")
        return lines
    for item in value:
        if isinstance(item, dict | list) and item:
            sub = _block(item, indent + YAML_INDENT)
            sub[0] = pad + "-" + sub[0][indent + 1:]
            lines += sub
        else:
            lines.append(f"{pad}- {_inline(item)}")
    return lines


def go_yaml(value: Any) -> str:
    if isinstance(value, dict | list) and value:
        return "\n".join(_block(value, 0)) + "\n"
    return _inline(value) + "\n"


# ---- tables ----------------------------------------------------------------------------------


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def table_time(text: str | None) -> str:
    """``Timestamp.AsTime().Format("2006-01-02 15:04:05")``: UTC; an unset Timestamp is the epoch."""
    if not text:
        return "1970-01-01 00:00:00"
    t = parse_time(text)
    if t.year == 1:
        return "0001-01-01 00:00:00"
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def local_time(text: str | None) -> str:
    """A time cell that is empty when unset (nodes' Last seen)."""
    return table_time(text) if text else ""
