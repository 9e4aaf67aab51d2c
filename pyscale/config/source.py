"""Raw settings from a YAML file (with line numbers) and from the environment.

The file is composed into PyYAML nodes, not loaded straight to Python values, so that every key keeps its
line. Mappings are flattened to dotted, lower-cased keys (viper matches keys case-insensitively) down to
the leaves; keys whose *value* is structured (lists, split DNS maps, extra records) stay whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from pyscale.config.report import Problem, Setting, Where

# libyaml's parser when PyYAML was built with it (about 10x faster), else the pure-Python one; both keep
# node marks (line numbers) and share SafeConstructor, so the results are identical.
Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Environment prefixes, weakest first: PYSCALE_* overrides HEADSCALE_*, both override the file.
ENV_PREFIXES = ("HEADSCALE_", "PYSCALE_")
# Structured kinds that cannot come from the environment (as in Headscale: maps need the file).
_NO_ENV_KINDS = frozenset({"splitmap", "strmap", "records"})


@dataclass
class RawSource:
    settings: dict[str, Setting] = field(default_factory=dict)
    sections: dict[str, Where] = field(default_factory=dict)  # dotted path of every mapping seen
    problems: list[Problem] = field(default_factory=list)


def read_yaml(path: str, is_structured: Callable[[str], bool]) -> RawSource:
    """Parse ``path``; YAML errors become problems with file:line, never exceptions."""
    src = RawSource()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        src.problems.append(Problem("error", "", f"cannot read config file: {e}", Where(path)))
        return src
    loader = None
    try:
        loader = Loader(text)  # the reader rejects control characters right here
        root = loader.get_single_node()
        if root is None:
            return src
        if not isinstance(root, yaml.MappingNode):
            line = root.start_mark.line + 1
            msg = "top level must be a mapping of keys"
            src.problems.append(Problem("error", "", msg, Where(path, line)))
            return src
        _walk(loader, root, "", path, is_structured, src)
    except yaml.YAMLError as e:
        src.problems.append(yaml_problem(e, text, path))
    except RecursionError:
        src.problems.append(Problem("error", "", "YAML error: structure nested too deeply", Where(path)))
    finally:
        if loader is not None:
            loader.dispose()
    return src


def yaml_problem(e: yaml.YAMLError, text: str, path: str, key: str = "") -> Problem:
    """A PyYAML error as a Problem at its file:line."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        msg = " ".join(p for p in (e.context, e.problem) if p)
        where = Where(path, mark.line + 1 if mark else None)
        return Problem("error", key, f"YAML syntax error: {msg}", where)
    if isinstance(e, yaml.reader.ReaderError):
        line = text.count("\n", 0, max(e.position, 0)) + 1
        return Problem("error", key, f"YAML error: {e.reason} (character {e.character!r})", Where(path, line))
    return Problem("error", key, f"YAML error: {e}", Where(path))


def _walk(
    loader: Any,
    node: yaml.MappingNode,
    prefix: str,
    path: str,
    is_structured: Callable[[str], bool],
    src: RawSource,
) -> None:
    loader.flatten_mapping(node)  # resolve "<<" merge keys the way the constructor would
    first_line: dict[str, int] = {}
    for knode, vnode in node.value:
        name = str(loader.construct_object(knode)).lower()
        dotted = f"{prefix}.{name}" if prefix else name
        where = Where(path, knode.start_mark.line + 1)
        if dotted in first_line:
            msg = f"duplicate key {dotted!r} (first defined at line {first_line[dotted]})"
            src.problems.append(Problem("error", dotted, msg, where))
            continue
        first_line[dotted] = where.line or 0
        if isinstance(vnode, yaml.MappingNode) and not is_structured(dotted):
            src.sections[dotted] = where
            _walk(loader, vnode, dotted, path, is_structured, src)
            continue
        text = vnode.value if isinstance(vnode, yaml.ScalarNode) else None
        src.settings[dotted] = Setting(loader.construct_object(vnode, deep=True), where, text)


def env_settings(
    kinds: Mapping[str, str], env: Mapping[str, str]
) -> tuple[dict[str, Setting], list[Problem]]:
    """Settings from HEADSCALE_<KEY> / PYSCALE_<KEY> (dots become underscores; empty values are unset)."""
    out: dict[str, Setting] = {}
    problems: list[Problem] = []
    for dotted, kind in kinds.items():
        for prefix in ENV_PREFIXES:
            var = prefix + dotted.upper().replace(".", "_")
            value = env.get(var, "")
            if not value:
                continue
            if kind in _NO_ENV_KINDS:
                msg = f"{dotted} cannot be set from the environment (use the config file); ignored"
                problems.append(Problem("warning", dotted, msg, Where(env=var)))
                continue
            out[dotted] = Setting(value, Where(env=var), value)
    return out, problems
