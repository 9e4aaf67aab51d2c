"""``pyscale apikeys``: list, create, expire, delete (Headscale v0.27.1 flags, messages and table)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pyscale.cli.client import segment
from pyscale.cli.durations import parse_prom_duration
from pyscale.cli.output import table, table_time
from pyscale.tailcfg.timefmt import format_time

if TYPE_CHECKING:
    from pyscale.cli.context import Context

DEFAULT_API_KEY_EXPIRY = "90d"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("apikeys", aliases=["apikey", "api"], help="Handle the Api keys in Headscale")
    cmds = keys.add_subparsers(dest="apikeys_cmd", metavar="COMMAND", required=True)
    p = cmds.add_parser("list", aliases=["ls", "show"], help="List the Api keys for headscale")
    p.set_defaults(run=list_)
    p = cmds.add_parser("create", aliases=["c", "new"], help="Creates a new Api key")
    p.add_argument("-e", "--expiration", default=DEFAULT_API_KEY_EXPIRY,
                   help="Human-readable expiration of the key (e.g. 30m, 24h)")
    p.set_defaults(run=create)
    p = cmds.add_parser("expire", aliases=["revoke", "exp", "e"], help="Expire an ApiKey")
    p.add_argument("-p", "--prefix", required=True, help="ApiKey prefix")
    p.set_defaults(run=expire)
    p = cmds.add_parser("delete", aliases=["remove", "del"], help="Delete an ApiKey")
    p.add_argument("-p", "--prefix", required=True, help="ApiKey prefix")
    p.set_defaults(run=delete)


def list_(ctx: Context) -> None:
    keys = ctx.call("GET", "/api/v1/apikey", fail="Error getting the list of keys: {}", raw_only=True)["apiKeys"]
    if ctx.output:
        ctx.emit(keys, "")
        return
    rows = [["ID", "Prefix", "Expiration", "Created"]]
    for k in keys:
        expiration = table_time(k["expiration"]) if k["expiration"] else "-"
        rows.append([k["id"], k["prefix"], expiration, table_time(k["createdAt"])])
    print(table(rows))


def create(ctx: Context) -> None:
    duration = parse_prom_duration(ctx.args.expiration)
    expiration = format_time(datetime.now(UTC) + duration)
    key = ctx.call("POST", "/api/v1/apikey", {"expiration": expiration}, fail="Cannot create Api Key: {}\n",
                   raw_only=True)["apiKey"]
    ctx.emit(key, key)


def expire(ctx: Context) -> None:
    result = ctx.call("POST", "/api/v1/apikey/expire", {"prefix": ctx.args.prefix},
                      fail="Cannot expire Api Key: {}\n", raw_only=True)
    ctx.emit(result, "Key expired")


def delete(ctx: Context) -> None:
    result = ctx.call("DELETE", f"/api/v1/apikey/{segment(ctx.args.prefix)}", fail="Cannot delete Api Key: {}\n",
                      raw_only=True)
    ctx.emit(result, "Key deleted")
