"""``pyscale`` command line: Headscale v0.27.1's command tree, flags and outputs.

Global flags: ``-c/--config``, ``-o/--output ''|json|json-line|yaml``, ``--force``. Commands that
manage the tailnet talk to the running server over its unix socket (never to the database
behind its back). Errors go to stderr (``{"error": ...}`` with -o json) with exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from pyscale import __version__
from pyscale.cli import (
    apikeys,
    backup,
    debug,
    dumpconfig,
    generate,
    nodes,
    policy,
    preauthkeys,
    routes,
    server,
    users,
)
from pyscale.cli.client import ClientError
from pyscale.cli.context import OUTPUT_FORMATS, CliError, Context
from pyscale.config import ConfigError

__all__ = ["CliError", "Context", "build_parser", "main"]

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyscale", description="pyscale: a Headscale-compatible control server")
    parser.add_argument("-c", "--config", help="config file (default: Headscale's search path)")
    parser.add_argument("-o", "--output", default="", choices=OUTPUT_FORMATS, help="output format")
    parser.add_argument("--force", action="store_true", help="disable prompts")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (server, users, nodes, preauthkeys, apikeys, policy, debug, generate, routes, dumpconfig, backup):
        module.register(sub)
    _accept_globals_everywhere(parser, set())
    return parser


def _accept_globals_everywhere(parser: argparse.ArgumentParser, seen: set[int]) -> None:
    """Headscale's global flags are cobra persistent flags: valid after any subcommand too."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in action.choices.values():
            if id(child) in seen:
                continue
            seen.add(id(child))
            child.add_argument("-c", "--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            child.add_argument("-o", "--output", default=argparse.SUPPRESS, choices=OUTPUT_FORMATS,
                               help=argparse.SUPPRESS)
            child.add_argument("--force", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            _accept_globals_everywhere(child, seen)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[Context], int | None] | None = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 0
    quiet = args.output in ("json", "json-line", "yaml")
    logging.basicConfig(level=logging.ERROR if quiet else logging.WARNING, format="%(levelname)s %(message)s")
    ctx = Context(args)
    try:
        return run(ctx) or 0
    except CliError as exc:
        ctx.emit_error(exc)
    except ClientError as exc:
        ctx.emit_error(CliError(exc.message, str(exc)))
    except ConfigError as exc:
        ctx.emit_error(CliError(f"Error loading config: {exc}", str(exc)))
    except KeyboardInterrupt:
        return 130
    return 1


def version_text() -> str:
    return f"pyscale version {__version__}\nheadscale-compatible: v0.27.1"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
