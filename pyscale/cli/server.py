"""``serve``, ``configtest``, ``version``, ``health``: the verbs that act on the server process itself."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING

from pyscale import __version__
from pyscale.config import (
    Config,
    ConfigError,
    default_data_dir,
    describe_locations,
    format_configtest,
    load_config_report,
)

if TYPE_CHECKING:
    from pyscale.cli.main import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the control server")
    p.set_defaults(run=serve)
    p = sub.add_parser("configtest", help="validate the config file and print every mapping and problem")
    p.set_defaults(run=configtest)
    p = sub.add_parser("doctor", help="check config, permissions, database, server, ports, STUN, DERP map, clock")
    p.set_defaults(run=doctor)
    p = sub.add_parser("version", help="print the version")
    p.set_defaults(run=version)
    p = sub.add_parser("health", help="ask the running server whether it is healthy")
    p.set_defaults(run=health)


def serve(ctx: Context) -> int:
    from pyscale.app import serve as serve_app
    from pyscale.logsetup import setup_logging

    report = load_config_report(ctx.args.config, embedded_data_dir=default_data_dir())
    if report.errors:
        raise ConfigError(report.errors, report.source_path)
    cfg = report.config
    setup_logging(cfg.log.level, cfg.log.format)
    import logging

    log = logging.getLogger("pyscale")
    for warning in report.warnings:
        log.warning("%s", warning)
    # Where everything is, as plain lines a person can read (journald gets them line by line too).
    print(f"pyscale {__version__}\n{describe_locations(cfg)}", file=sys.stderr, flush=True)
    log.info("starting pyscale %s with %s", __version__, cfg.source_path or "the embedded default")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_app(cfg, reload_config=lambda: _reload_config(ctx)))
    return 0


def _reload_config(ctx: Context) -> Config:
    """SIGHUP: the same file again, re-read and re-validated (errors refuse the reload)."""
    report = load_config_report(ctx.args.config, embedded_data_dir=default_data_dir())
    if report.errors:
        raise ConfigError(report.errors, report.source_path)
    return report.config


def configtest(ctx: Context) -> int:
    report = load_config_report(ctx.args.config, embedded_data_dir=default_data_dir(), check_files=True)
    print(format_configtest(report))
    return 1 if report.errors else 0


def version(ctx: Context) -> int:
    if ctx.output:
        ctx.emit({"version": __version__}, "")
    else:
        print(f"pyscale version {__version__} (Headscale v0.27.1 compatible)")
    return 0


def health(ctx: Context) -> int:
    result = ctx.call("GET", "/api/v1/health", fail="Error checking health")
    ctx.emit(result, "")
    return 0 if result.get("databaseConnectivity") else 1




def doctor(ctx: Context) -> int:
    from pyscale import doctor as checks

    report = load_config_report(ctx.args.config, embedded_data_dir=default_data_dir(), check_files=True)
    ok = checks.run(report, lambda finding: print(finding.line(), flush=True))
    print("All checks passed." if ok else "Some checks failed: see the -> lines above.")
    return 0 if ok else 1
