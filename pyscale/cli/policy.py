"""``pyscale policy get | set -f FILE | check -f FILE`` (Headscale v0.27.1).

get prints the stored policy text verbatim (it ignores ``-o``); set works in database mode only
(the server answers ``update is disabled for modes other than 'database'`` otherwise); check
parses and validates a file locally, without a server. ``--bypass-grpc-and-access-database-directly``
is accepted but pyscale still goes through the running server: State is the only writer.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyscale.cli.context import Context

BYPASS_FLAG = "--bypass-grpc-and-access-database-directly"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = sub.add_parser("policy", help="Manage the Headscale ACL Policy")
    cmds = policy.add_subparsers(dest="policy_cmd", metavar="COMMAND", required=True)
    p = cmds.add_parser("get", aliases=["show", "view", "fetch"], help="Print the current ACL Policy")
    p.add_argument(BYPASS_FLAG, action="store_true", dest="bypass", help="accepted; pyscale asks the server")
    p.set_defaults(run=get)
    p = cmds.add_parser("set", aliases=["put", "update"], help="Updates the ACL Policy")
    p.add_argument("-f", "--file", required=True, help="Path to a policy file in HuJSON format")
    p.add_argument(BYPASS_FLAG, action="store_true", dest="bypass", help="accepted; pyscale asks the server")
    p.set_defaults(run=set_)
    p = cmds.add_parser("check", help="Check the Policy file for errors")
    p.add_argument("-f", "--file", required=True, help="Path to a policy file in HuJSON format")
    p.set_defaults(run=check)


def _read(path: str) -> str:
    from pyscale.cli.context import CliError

    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise CliError(f"Error opening the policy file: {exc}", str(exc)) from None


def get(ctx: Context) -> None:
    result = ctx.call("GET", "/api/v1/policy", fail="Failed loading ACL Policy: {}", raw_only=True)
    print(result["policy"])


def set_(ctx: Context) -> None:
    text = _read(ctx.args.file)
    ctx.call("PUT", "/api/v1/policy", {"policy": text}, fail="Failed to set ACL Policy: {}", raw_only=True)
    print("Policy updated.")


def check(ctx: Context) -> None:
    from pyscale.api.service import Unknown, check_policy
    from pyscale.cli.context import CliError

    text = _read(ctx.args.file)
    try:
        check_policy(text)
    except Unknown as exc:
        message = str(exc).removeprefix("setting policy: ")
        raise CliError(f"Error parsing the policy file: {message}", message) from None
    print("Policy is valid")
