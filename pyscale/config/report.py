"""What loading a config file found: locations, problems, legacy-key mappings, and their printed form.

Every problem and mapping carries a ``Where`` (file:line, an environment variable, or a default), so
``pyscale configtest`` and ``ConfigError`` can point at the exact line to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pyscale.config.model import Config


@dataclass(frozen=True)
class Where:
    """Where a value came from: a file line, an environment variable, or nowhere (a default)."""

    file: str | None = None
    line: int | None = None
    env: str | None = None

    def __str__(self) -> str:
        if self.env:
            return f"env {self.env}"
        if self.file and self.line:
            return f"{self.file}:{self.line}"
        return self.file or "<defaults>"


@dataclass(frozen=True)
class Setting:
    """One raw value from the file or the environment. ``text`` is the YAML scalar's source text, if any."""

    value: Any
    where: Where
    text: str | None = None


@dataclass(frozen=True)
class Problem:
    severity: Literal["error", "warning"]
    key: str  # dotted YAML key the problem is about ("" when it concerns the whole file)
    message: str
    where: Where = field(default_factory=Where)

    @property
    def file(self) -> str | None:
        return self.where.file

    @property
    def line(self) -> int | None:
        return self.where.line

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class LegacyMapping:
    """A pre-0.23 key found in the file and what pyscale did with it."""

    old_key: str
    new_key: str | None  # None: the key has no current equivalent and was ignored
    where: Where
    applied: bool  # False when the current key was also set (it wins) or the key was dropped

    @property
    def file(self) -> str | None:
        return self.where.file

    @property
    def line(self) -> int | None:
        return self.where.line

    def __str__(self) -> str:
        if self.new_key is None:
            return f"{self.where}: {self.old_key} -> (ignored, no current equivalent)"
        if not self.applied:
            return f"{self.where}: {self.old_key} -> {self.new_key} (not used: {self.new_key} is also set)"
        return f"{self.where}: {self.old_key} -> {self.new_key}"


@dataclass
class ConfigReport:
    """Result of loading: ``config`` is always built (best effort: invalid values fall back to defaults),
    but only trustworthy when ``ok``."""

    config: Config
    source_path: str | None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    mappings: list[LegacyMapping] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every error found, each with its location."""

    def __init__(self, problems: list[Problem], source_path: str | None = None) -> None:
        self.problems = list(problems)
        self.source_path = source_path
        head = f"invalid configuration ({source_path})" if source_path else "invalid configuration"
        super().__init__("\n".join([head + ":"] + [f"  {p}" for p in self.problems]))


def format_configtest(report: ConfigReport) -> str:
    """What `pyscale configtest` prints: the file, every legacy mapping, warning and error, then OK/FAIL."""
    out = [f"config file: {report.source_path or '(none: embedded default)'}"]
    if report.mappings:
        out.append(f"legacy keys mapped ({len(report.mappings)}):")
        out.extend(f"  {m}" for m in report.mappings)
    if report.warnings:
        out.append(f"warnings ({len(report.warnings)}):")
        out.extend(f"  {w}" for w in report.warnings)
    if report.errors:
        out.append(f"errors ({len(report.errors)}):")
        out.extend(f"  {e}" for e in report.errors)
        out.append(f"FAIL: {len(report.errors)} error(s)")
    else:
        out.append("OK")
    return "\n".join(out)
