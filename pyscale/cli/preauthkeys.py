"""``pyscale preauthkeys``: create, list, expire. ``-u/--user`` takes the numeric user id (as v0.27.1)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pyscale.cli.durations import parse_prom_duration
from pyscale.cli.nodes import string_slice
from pyscale.cli.output import table, table_time
from pyscale.tailcfg.timefmt import format_time

if TYPE_CHECKING:
    from pyscale.cli.context import Context

DEFAULT_PRE_AUTH_KEY_EXPIRY = "1h"
__all__ = ["parse_prom_duration", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("preauthkeys", aliases=["preauthkey", "authkey", "pre"],
                          help="Handle the preauthkeys in Headscale")
    keys.add_argument("-u", "--user", type=int, default=0, help="User identifier (ID)")
    keys.add_argument("-n", "--namespace", default="", help=argparse.SUPPRESS)
    cmds = keys.add_subparsers(dest="keys_cmd", metavar="COMMAND", required=True)
    p = cmds.add_parser("create", aliases=["c", "new"], help="Creates a new preauthkey in the specified user")
    p.add_argument("--reusable", action="store_true", help="Make the preauthkey reusable")
    p.add_argument("--ephemeral", action="store_true", help="Preauthkey for ephemeral nodes")
    p.add_argument("-e", "--expiration", default=DEFAULT_PRE_AUTH_KEY_EXPIRY,
                   help="Human-readable expiration of the key (e.g. 30m, 24h)")
    p.add_argument("--tags", action="append", default=[], help="Tags to automatically assign to node")
    p.set_defaults(run=create)
    p = cmds.add_parser("list", aliases=["ls", "show"], help="List the preauthkeys for this user")
    p.set_defaults(run=list_)
    p = cmds.add_parser("expire", aliases=["revoke", "exp", "e"], help="Expire a preauthkey")
    p.add_argument("key", metavar="KEY")
    p.set_defaults(run=expire)
    # -u is a persistent flag in Headscale: accepted after the verb as well
    for child in {id(c): c for c in cmds.choices.values()}.values():
        child.add_argument("-u", "--user", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def create(ctx: Context) -> None:
    a = ctx.args
    expiration = datetime.now(UTC) + parse_prom_duration(a.expiration)
    body = {"user": str(a.user), "reusable": a.reusable, "ephemeral": a.ephemeral,
            "expiration": format_time(expiration), "aclTags": string_slice(a.tags)}
    key = ctx.call("POST", "/api/v1/preauthkey", body, fail="Cannot create Pre Auth Key: {}\n",
                   raw_only=True)["preAuthKey"]
    ctx.emit(key, key["key"])


def list_(ctx: Context) -> None:
    keys = ctx.call("GET", "/api/v1/preauthkey", query={"user": str(ctx.args.user)},
                    fail="Error getting the list of keys: {}", raw_only=True)["preAuthKeys"]
    if ctx.output:
        ctx.emit(keys, "")
        return
    rows = [["ID", "Key", "Reusable", "Ephemeral", "Used", "Expiration", "Created", "Tags"]]
    for k in keys:
        expiration = table_time(k["expiration"]) if k["expiration"] else "-"
        rows.append([k["id"], k["key"], _b(k["reusable"]), _b(k["ephemeral"]), _b(k["used"]), expiration,
                     table_time(k["createdAt"]), ",".join(k["aclTags"])])
    print(table(rows))


def expire(ctx: Context) -> None:
    result = ctx.call("POST", "/api/v1/preauthkey/expire", {"user": str(ctx.args.user), "key": ctx.args.key},
                      fail="Cannot expire Pre Auth Key: {}\n", raw_only=True)
    ctx.emit(result, "Key expired")


def _b(value: bool) -> str:
    return "true" if value else "false"
