"""``pyscale debug create-node``: put a fake node in the registration cache (``nodes register`` completes it)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pyscale.cli.nodes import string_slice

if TYPE_CHECKING:
    from pyscale.cli.context import Context

REGISTRATION_ID_LEN = 24


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    debug = sub.add_parser("debug", help="debug and testing commands")
    cmds = debug.add_subparsers(dest="debug_cmd", metavar="COMMAND", required=True)
    p = cmds.add_parser("create-node", help="Create a node that can be registered with `nodes register <>` command")
    p.add_argument("--name", required=True, help="Name")
    p.add_argument("-u", "--user", required=True, help="User")
    p.add_argument("-n", "--namespace", default="", help=argparse.SUPPRESS)
    p.add_argument("-k", "--key", required=True, help="Key")
    p.add_argument("-r", "--route", action="append", default=[], help="List (or repeated flags) of routes to advertise")
    p.set_defaults(run=create_node)


def create_node(ctx: Context) -> None:
    from pyscale.cli.context import CliError

    a = ctx.args
    if len(a.key) != REGISTRATION_ID_LEN:
        err = "registration ID must be 24 characters long"
        raise CliError(f"Failed to parse machine key from flag: {err}", err)
    body = {"key": a.key, "name": a.name, "user": a.user, "routes": string_slice(a.route)}
    node = ctx.call("POST", "/api/v1/debug/node", body, fail="Cannot create node: {}")["node"]
    ctx.emit(node, "Node created")
