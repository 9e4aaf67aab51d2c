"""Settings (dotted key -> raw value with its location) -> the frozen ``Config`` tree.

The model's dataclasses are the schema: ``leaf_kinds()`` lists every known YAML key with its kind, and
``build()`` fills each field from the settings or its raw default, coercing with ``coerce.COERCERS``.
A value that cannot be coerced is reported (with its file:line) and replaced by the default, so that one
pass finds every problem.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from typing import Any

from pyscale.config import model
from pyscale.config.coerce import COERCERS, CoerceError, Ctx
from pyscale.config.report import Problem, Setting, Where

_DEFAULT_WHERE = Where()


def yaml_name(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("yaml") or f.name)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(model))


def section_type(cls: type, f: dataclasses.Field[Any]) -> type | None:
    t = _hints(cls)[f.name]
    return t if isinstance(t, type) and dataclasses.is_dataclass(t) else None


def _walk_model(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field[Any] | None, type | None]]:
    """(dotted path, leaf field or None, section class or None) for every key and section under ``cls``."""
    out: list[tuple[str, dataclasses.Field[Any] | None, type | None]] = []
    for f in dataclasses.fields(cls):
        if "kind" not in f.metadata and section_type(cls, f) is None:
            continue  # not a YAML key (e.g. Config.source_path)
        path = f"{prefix}{yaml_name(f)}"
        sub = section_type(cls, f)
        if sub is not None:
            out.append((path, None, sub))
            out.extend(_walk_model(sub, path + "."))
        else:
            out.append((path, f, None))
    return out


@functools.cache
def leaf_kinds() -> dict[str, str]:
    """Every YAML key pyscale knows (current names), with its kind."""
    return {p: str(f.metadata["kind"]) for p, f, _ in _walk_model(model.Config) if f is not None}


@functools.cache
def section_paths() -> frozenset[str]:
    return frozenset(p for p, f, _ in _walk_model(model.Config) if f is None)


def build(settings: Mapping[str, Setting], config_dir: str | None, problems: list[Problem]) -> model.Config:
    """Build a Config; problems (coercion errors and warnings) are appended to ``problems``."""
    return typing.cast(model.Config, _build(model.Config, "", settings, config_dir, problems))


def _build(
    cls: type, prefix: str, settings: Mapping[str, Setting], config_dir: str | None, problems: list[Problem]
) -> Any:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        sub = section_type(cls, f)
        path = f"{prefix}{yaml_name(f)}"
        if sub is not None:
            kwargs[f.name] = _build(sub, path + ".", settings, config_dir, problems)
        elif "kind" in f.metadata:
            kwargs[f.name] = _leaf(f, path, settings, config_dir, problems)
    return cls(**kwargs)


def _leaf(
    f: dataclasses.Field[Any],
    path: str,
    settings: Mapping[str, Setting],
    config_dir: str | None,
    problems: list[Problem],
) -> Any:
    coerce = COERCERS[f.metadata["kind"]]
    default = Setting(f.metadata["default"], _DEFAULT_WHERE)
    s = settings.get(path, default)

    def warn(msg: str) -> None:
        problems.append(Problem("warning", path, f"{path}: {msg}", s.where))

    ctx = Ctx(config_dir, warn)
    try:
        return coerce(s, ctx)
    except CoerceError as e:
        problems.append(Problem("error", path, f"{path}: {e}", s.where))
        return coerce(default, ctx)
