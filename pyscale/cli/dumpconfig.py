"""``pyscale dumpConfig`` (hidden, like Headscale's): write the effective config as YAML.

Headscale writes viper's merged settings to /etc/headscale/config.dump.yaml for its integration
tests; pyscale writes its effective Config (file, legacy mappings and environment applied) there,
or to ``--path``. Prints ``Failed to dump config`` when the file cannot be written.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from pyscale.cli.context import Context

DUMP_PATH = "/etc/headscale/config.dump.yaml"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dumpConfig")  # no help: hidden from the command list, as in Headscale
    p.add_argument("--path", default=DUMP_PATH, help=argparse.SUPPRESS)
    p.set_defaults(run=dump)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            name = f.metadata.get("yaml") or f.name.rstrip("_")
            out[name] = _plain(getattr(value, f.name))
        return out
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def dump(ctx: Context) -> int:
    try:
        with open(ctx.args.path, "w", encoding="utf-8") as f:
            yaml.safe_dump(_plain(ctx.config), f, sort_keys=True)
    except OSError:
        print("Failed to dump config")
    return 0
