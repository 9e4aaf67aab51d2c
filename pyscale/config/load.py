"""Finding and loading the config file: file -> legacy mapping -> environment -> Config -> validation.

Order of precedence, strongest first: PYSCALE_<KEY>, HEADSCALE_<KEY>, the file (current key, else the
legacy key mapped to it), the default. Nothing here raises on a bad file except ``load_config``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence

from pyscale.config import build as builder
from pyscale.config import files, legacy
from pyscale.config.embedded import embedded_settings
from pyscale.config.model import Config
from pyscale.config.report import ConfigError, ConfigReport, LegacyMapping, Problem, Setting, Where
from pyscale.config.source import RawSource, env_settings, read_yaml
from pyscale.config.validate import LOG_LEVELS, validate

log = logging.getLogger("pyscale.config")

CONFIG_NAMES = ("config.yaml", "config.yml", "config.json")
# Headscale's search order when no file is named: /etc/headscale, $HOME/.headscale, the working directory.
SEARCH_DIRS = ("/etc/headscale", "~/.headscale", ".")
ENV_CONFIG_VARS = ("PYSCALE_CONFIG", "HEADSCALE_CONFIG")  # strongest first


def find_config_file(
    path: str | None = None,
    env: Mapping[str, str] = os.environ,
    search_dirs: Sequence[str] = SEARCH_DIRS,
) -> str | None:
    """The config file to use: ``path`` (-c), else $PYSCALE_CONFIG / $HEADSCALE_CONFIG, else the first
    config.{yaml,yml,json} in ``search_dirs``. An explicitly named file is returned even if missing (the
    loader then reports it); None means no file anywhere."""
    explicit = path or next((env[v] for v in ENV_CONFIG_VARS if env.get(v)), None)
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    home = env.get("HOME") or os.path.expanduser("~")
    for d in search_dirs:
        d = home + d[1:] if d.startswith("~") else d
        for name in CONFIG_NAMES:
            candidate = os.path.join(d, name)
            if os.path.isfile(candidate):
                return os.path.abspath(candidate)
    return None


def _is_structured(dotted: str) -> bool:
    kind = builder.leaf_kinds().get(dotted)
    return kind in ("splitmap", "strmap", "records") or dotted in legacy.STRUCTURED


def load_config_report(
    path: str | None = None,
    env: Mapping[str, str] = os.environ,
    *,
    search_dirs: Sequence[str] = SEARCH_DIRS,
    embedded_data_dir: str | None = None,
    check_files: bool = False,
) -> ConfigReport:
    """Load and validate without raising or logging. When no file is found at all, ``embedded_data_dir``
    selects the embedded default (no-config mode of ``pyscale serve``); without it, that is an error.
    ``check_files`` also checks the files the config names (policy, DERP maps, certificates, key format);
    `pyscale configtest` wants that, a unit test on another machine's config does not."""
    source_path = find_config_file(path, env, search_dirs)
    if source_path is None:
        if embedded_data_dir is not None:
            embedded = embedded_settings(embedded_data_dir)
            return build_from_settings(embedded, None, env, [], [], None, check_files)
        dirs = ", ".join(search_dirs)
        msg = f"no config file found (use -c FILE or $PYSCALE_CONFIG; searched {dirs})"
        return build_from_settings({}, None, env, [Problem("error", "", msg, Where())], [])
    if not os.path.exists(source_path):
        problem = Problem("error", "", "config file not found", Where(source_path))
        return build_from_settings({}, source_path, env, [problem], [])
    src = read_yaml(source_path, _is_structured)
    settings, mappings, legacy_problems = legacy.apply_legacy(src)
    problems = src.problems + legacy_problems + _unknown_keys(src, settings)
    return build_from_settings(settings, source_path, env, problems, mappings, src.sections, check_files)


def build_from_settings(
    file_settings: dict[str, Setting],
    source_path: str | None,
    env: Mapping[str, str],
    problems: list[Problem],
    mappings: list[LegacyMapping],
    sections: Mapping[str, Where] | None = None,
    check_files: bool = False,
) -> ConfigReport:
    env_values, env_problems = env_settings(builder.leaf_kinds(), env)
    settings = {**file_settings, **env_values}
    problems = problems + env_problems
    config_dir = os.path.dirname(source_path) if source_path else None
    cfg = builder.build(settings, config_dir, problems)
    cfg = dataclasses.replace(cfg, source_path=source_path)
    cfg = _infer_key_paths(cfg, settings, problems)
    problems += validate(cfg, settings, sections)
    if check_files:
        problems += files.check_files(cfg, settings)
    cfg = _normalise(cfg)
    problems.sort(key=_location_order)
    return ConfigReport(
        config=cfg,
        source_path=source_path,
        errors=[p for p in problems if p.severity == "error"],
        warnings=[p for p in problems if p.severity == "warning"],
        mappings=mappings,
    )


def _location_order(p: Problem) -> tuple[int, int]:
    """File lines in order, then file-level problems, then environment ones (stable within each)."""
    w = p.where
    return (2 if w.env else 1 if w.line is None else 0, w.line or 0)


def _unknown_keys(src: RawSource, settings: Mapping[str, Setting]) -> list[Problem]:
    known = builder.leaf_kinds()
    sections = builder.section_paths()
    out = []
    for key, s in settings.items():
        if key in known:
            continue
        if key in sections and s.value is None:
            continue  # "oidc:" written with nothing under it
        if key in sections:
            out.append(Problem("error", key, f"{key} must be a mapping of keys", s.where))
        else:
            out.append(Problem("warning", key, f"unknown key {key!r} ignored", s.where))
    return out


def _infer_key_paths(cfg: Config, settings: Mapping[str, Setting], problems: list[Problem]) -> Config:
    """Old config files often lack the Noise key path (pre-0.15) or the DERP key path. Headscale refuses
    to start then; pyscale uses the standard file names next to the database, and says so."""
    data_dir = os.path.dirname(cfg.database.sqlite.path)
    if not cfg.noise.private_key_path and data_dir:
        path = os.path.join(data_dir, "noise_private.key")
        where = settings["database.sqlite.path"].where if "database.sqlite.path" in settings else Where()
        msg = f"noise.private_key_path is not set; using {path} (next to the database). Set it explicitly"
        problems.append(Problem("warning", "noise.private_key_path", msg, where))
        cfg = dataclasses.replace(cfg, noise=dataclasses.replace(cfg.noise, private_key_path=path))
    server = cfg.derp.server
    if server.enabled and not server.private_key_path:
        base = os.path.dirname(cfg.noise.private_key_path) or data_dir
        if base:
            path = os.path.join(base, "derp_server_private.key")
            where = settings["derp.server.enabled"].where if "derp.server.enabled" in settings else Where()
            msg = f"derp.server.private_key_path is not set; using {path} (next to the noise key)"
            problems.append(Problem("warning", "derp.server.private_key_path", msg, where))
            derp = dataclasses.replace(cfg.derp, server=dataclasses.replace(server, private_key_path=path))
            cfg = dataclasses.replace(cfg, derp=derp)
        else:
            problems.append(
                Problem("error", "derp.server.private_key_path", "derp.server.private_key_path must be set")
            )
    return cfg


def _normalise(cfg: Config) -> Config:
    """Values as Headscale uses them internally: database type "sqlite3", known log level and format,
    batcher workers resolved."""
    db = cfg.database
    if db.type == "sqlite":
        cfg = dataclasses.replace(cfg, database=dataclasses.replace(db, type="sqlite3"))
    level = cfg.log.level.lower()
    level = level if level in LOG_LEVELS else "debug"
    fmt = cfg.log.format if cfg.log.format == "json" else "text"
    cfg = dataclasses.replace(cfg, log=dataclasses.replace(cfg.log, level=level, format=fmt))
    if cfg.tuning.batcher_workers <= 0:  # Headscale: 3/4 of the CPU cores, at least one
        workers = max(1, (os.cpu_count() or 1) * 3 // 4)
        cfg = dataclasses.replace(cfg, tuning=dataclasses.replace(cfg.tuning, batcher_workers=workers))
    return cfg


# Keys the CLI verbs read (as Headscale's LoadCLIConfig): problems elsewhere concern only the server.
CLI_KEYS = ("unix_socket", "unix_socket_permission", "disable_check_updates")
CLI_SECTIONS = ("cli.", "log.")


def load_cli_config(
    path: str | None = None,
    env: Mapping[str, str] = os.environ,
    *,
    search_dirs: Sequence[str] = SEARCH_DIRS,
    embedded_data_dir: str | None = None,
) -> Config:
    """Config for CLI verbs (users, nodes, ...): like Headscale's CLI, only a broken file or a bad
    unix_socket/cli.*/log.* value stops it; server-only problems (prefixes, DNS, ...) do not."""
    report = load_config_report(path, env, search_dirs=search_dirs, embedded_data_dir=embedded_data_dir)
    relevant = [e for e in report.errors if e.key in ("", *CLI_KEYS) or e.key.startswith(CLI_SECTIONS)]
    if relevant:
        raise ConfigError(relevant, report.source_path)
    return report.config


def load_config(path: str | None = None, env: Mapping[str, str] = os.environ) -> Config:
    """Load, validate, log each warning once; raise ConfigError listing every error."""
    report = load_config_report(path, env)
    for w in report.warnings:
        log.warning("%s", w)
    if report.errors:
        raise ConfigError(report.errors, report.source_path)
    return report.config
