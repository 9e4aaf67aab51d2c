"""``backup DIR`` and ``restore DIR``: act on the files directly (a restore needs the server stopped)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyscale.cli.main import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("backup", help="copy the live database, config, policy and keys into a new directory")
    p.add_argument("path", help="directory to create (must not hold a backup yet)")
    p.set_defaults(run=backup)
    p = sub.add_parser("restore", help="verify a backup and put it in place (the server must be stopped)")
    p.add_argument("path", help="a directory written by `pyscale backup`")
    p.add_argument("--verify-only", action="store_true", help="check the backup, change nothing")
    p.set_defaults(run=restore)


def _config_path(ctx: Context) -> str | None:
    from pyscale.config import find_config_file

    return find_config_file(ctx.args.config)


def backup(ctx: Context) -> int:
    from pyscale import backup as bk
    from pyscale.cli.main import CliError

    try:
        manifest = bk.backup(ctx.config, _config_path(ctx), ctx.args.path)
    except (bk.BackupError, OSError) as exc:
        raise CliError(str(exc)) from exc
    summary = ", ".join(f"{n} {t}" for t, n in manifest.counts.items())
    ctx.emit(json.loads(manifest.to_json()), f"backup written to {ctx.args.path}: {summary}; "
             f"files: {', '.join(sorted(manifest.files))}")
    return 0


def restore(ctx: Context) -> int:
    from pyscale import backup as bk
    from pyscale.cli.main import CliError

    try:
        if ctx.args.verify_only:
            manifest = bk.verify_backup(ctx.args.path)
            ctx.emit(json.loads(manifest.to_json()), f"backup {ctx.args.path} is sound: {manifest.counts}")
            return 0
        done = bk.restore(ctx.config, _config_path(ctx), ctx.args.path)
    except (bk.BackupError, OSError) as exc:
        raise CliError(str(exc)) from exc
    ctx.emit({"restored": done}, "restored:\n  " + "\n  ".join(done))
    return 0
