"""``pyscale`` command line: Headscale v0.27.1's command tree, flags and outputs.

Global flags: ``-c/--config``, ``-o/--output ''|json|json-line|yaml``, ``--force``. Commands that
manage the tailnet talk to the running server over its unix socket (never to the database
behind its back). Errors go to stderr (``{"error": ...}`` with -o json) with exit code 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pyscale import __version__
from pyscale.cli import nodes, policy, preauthkeys, server, users
from pyscale.cli.client import ApiClient, ClientError
from pyscale.config import Config, ConfigError, default_data_dir, load_cli_config

OUTPUT_FORMATS = ("", "json", "json-line", "yaml")


class CliError(Exception):
    pass


class Context:
    """What a command needs: parsed args, the config (loaded lazily) and an API client."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.output: str = args.output or ""
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            # Like Headscale's CLI: only problems in the keys the CLI reads stop it.
            self._config = load_cli_config(self.args.config, embedded_data_dir=default_data_dir())
        return self._config

    def client(self) -> ApiClient:
        cfg = self.config
        address = os.environ.get("HEADSCALE_CLI_ADDRESS") or cfg.cli.address
        api_key = os.environ.get("HEADSCALE_CLI_API_KEY") or cfg.cli.api_key
        if address and not api_key:
            raise CliError("HEADSCALE_CLI_API_KEY environment variable needs to be set.")
        return ApiClient(cfg.unix_socket, address=address, api_key=api_key, timeout=cfg.cli.timeout)

    def emit(self, obj: Any, text: str) -> None:
        """Print ``text`` normally, or ``obj`` in the requested machine format."""
        from pyscale.cli.output import render

        print(render(obj, self.output) if self.output else text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyscale", description="pyscale: a Headscale-compatible control server")
    parser.add_argument("-c", "--config", help="config file (default: Headscale's search path)")
    parser.add_argument("-o", "--output", default="", choices=OUTPUT_FORMATS, help="output format")
    parser.add_argument("--force", action="store_true", help="disable prompts")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (server, users, nodes, preauthkeys, policy):
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
    except (ClientError, CliError, ConfigError) as exc:
        if ctx.output in ("json", "json-line", "yaml"):
            print(json.dumps({"error": str(exc)}), file=sys.stderr)
        else:
            print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def version_text() -> str:
    return f"pyscale version {__version__}\nheadscale-compatible: v0.27.1"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
