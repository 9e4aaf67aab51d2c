"""What every command gets: parsed args, the config (loaded lazily), the API client, and Headscale's
two output paths, SuccessOutput and ErrorOutput.

Success: the text, or the object in the ``-o`` format, on stdout, exit 0. Failure: on stderr the
friendly text (``Cannot expire node: <message>``), or with ``-o json|json-line|yaml`` the raw
error as ``{"error": "rpc error: code = … desc = …"}``; exit 1. As Headscale does, the friendly
text of a server error quotes only the status message, the machine form the whole error.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pyscale.cli.client import ApiClient, ClientError
from pyscale.config import Config, default_data_dir, load_cli_config

OUTPUT_FORMATS = ("", "json", "json-line", "yaml")


class CliError(Exception):
    """A command failure: ``friendly`` for people, ``raw`` (default: the same) for ``-o`` formats."""

    def __init__(self, friendly: str, raw: str | None = None) -> None:
        super().__init__(friendly)
        self.friendly = friendly
        self.raw = raw if raw is not None else friendly.strip()


class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.output: str = getattr(args, "output", "") or ""
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            # Like Headscale's CLI: only problems in the keys the CLI itself reads stop it.
            self._config = load_cli_config(self.args.config, embedded_data_dir=default_data_dir())
        return self._config

    def client(self) -> ApiClient:
        cfg = self.config
        address = os.environ.get("HEADSCALE_CLI_ADDRESS") or cfg.cli.address
        api_key = os.environ.get("HEADSCALE_CLI_API_KEY") or cfg.cli.api_key
        if address and not api_key:
            raise CliError("HEADSCALE_CLI_API_KEY environment variable needs to be set.")
        return ApiClient(cfg.unix_socket, address=address, api_key=api_key, timeout=cfg.cli.timeout,
                         insecure=cfg.cli.insecure)

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None, *,
             fail: str = "{}", raw_only: bool = False) -> Any:
        """One API call; on failure raise CliError(fail.format(status message), raw error)."""
        try:
            return self.client().call(method, path, body, query)
        except ClientError as exc:
            raise CliError(fail.format(str(exc) if raw_only else exc.message), str(exc)) from None

    def user_or_namespace(self) -> str:
        """``--user``, or the hidden deprecated ``--namespace`` (cobra's warning on stderr)."""
        namespace = getattr(self.args, "namespace", "")
        if namespace:
            print("Flag --namespace has been deprecated, use --user", file=sys.stderr)
        return str(getattr(self.args, "user", "") or namespace)

    @property
    def force(self) -> bool:
        return bool(getattr(self.args, "force", False))

    def emit(self, obj: Any, text: str, *, plain: bool = False) -> None:
        """SuccessOutput: ``text`` normally, or ``obj`` in the requested machine format (``plain``:
        a Go map, printed as is; otherwise a REST message converted to the protobuf struct's shape)."""
        from pyscale.cli.output import render, render_plain

        if not self.output:
            print(text)
        else:
            print(render_plain(obj, self.output) if plain else render(obj, self.output))

    def emit_error(self, exc: CliError) -> None:
        from pyscale.cli.output import render_plain

        if self.output:
            print(render_plain({"error": exc.raw}, self.output), file=sys.stderr)
        else:
            print(exc.friendly, file=sys.stderr)

    def confirm(self, question: str) -> bool:
        """util.YesNo: ask on stderr, read one answer; anything but y/yes/sure is no."""
        print(f"{question} [y/n] ", end="", file=sys.stderr, flush=True)
        try:
            answer = sys.stdin.readline()
        except (OSError, ValueError):
            return False
        return answer.strip().lower() in ("y", "yes", "sure")
