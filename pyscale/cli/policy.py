"""``pyscale policy get|set|check`` (Headscale v0.27.1 verbs; set needs ``policy.mode: database``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyscale.cli.main import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = sub.add_parser("policy", help="manage the ACL policy")
    cmds = policy.add_subparsers(dest="policy_cmd", metavar="COMMAND", required=True)
    p = cmds.add_parser("get", aliases=["show", "view", "fetch"], help="print the policy in force")
    p.set_defaults(run=get)
    p = cmds.add_parser("set", aliases=["put", "update"], help="replace the policy (database mode)")
    p.add_argument("-f", "--file", required=True)
    p.set_defaults(run=set_)
    p = cmds.add_parser("check", help="validate a policy file (syntax, names, its tests) without a server")
    p.add_argument("-f", "--file", required=True)
    p.set_defaults(run=check)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        from pyscale.cli.main import CliError

        raise CliError(f"reading policy file: {exc}") from exc


def get(ctx: Context) -> None:
    print(ctx.client().call("GET", "/api/v1/policy")["policy"])


def set_(ctx: Context) -> None:
    ctx.client().call("PUT", "/api/v1/policy", {"policy": _read(ctx.args.file)})
    print("Policy updated.")


def check(ctx: Context) -> None:
    from pyscale.cli.main import CliError
    from pyscale.policy import PolicyError, load_policy

    try:
        load_policy(_read(ctx.args.file), ctx.args.file)
    except PolicyError as exc:
        raise CliError(str(exc)) from exc
    print("Policy is valid")
