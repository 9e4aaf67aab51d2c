"""``pyscale preauthkeys``: create, list, expire. ``-u/--user`` takes the numeric user id (as v0.27.1)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pyscale.cli.output import local_time, table
from pyscale.tailcfg.timefmt import format_time

if TYPE_CHECKING:
    from pyscale.cli.main import Context

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_prom_duration(text: str) -> timedelta:
    """Prometheus duration (``30m``, ``24h``, ``90d``, ``1y``, ``1h30m``)."""
    import re

    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        from pyscale.cli.main import CliError

        raise CliError(f"invalid duration {text!r} (use e.g. 30m, 24h, 90d)")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("preauthkeys", aliases=["preauthkey", "authkey", "pre"], help="manage pre-auth keys")
    keys.add_argument("-u", "--user", type=int, required=True, help="user id")
    cmds = keys.add_subparsers(dest="keys_cmd", metavar="COMMAND", required=True)
    p = cmds.add_parser("create", aliases=["c", "new"], help="create a pre-auth key")
    p.add_argument("--reusable", action="store_true")
    p.add_argument("--ephemeral", action="store_true")
    p.add_argument("-e", "--expiration", default="1h")
    p.add_argument("--tags", default="", help="comma-separated tags (tag:a,tag:b)")
    p.set_defaults(run=create)
    p = cmds.add_parser("list", aliases=["ls", "show"], help="list pre-auth keys")
    p.set_defaults(run=list_)
    p = cmds.add_parser("expire", aliases=["revoke", "exp", "e"], help="expire a pre-auth key")
    p.add_argument("key")
    p.set_defaults(run=expire)


def create(ctx: Context) -> None:
    a = ctx.args
    expiration = datetime.now(UTC) + parse_prom_duration(a.expiration)
    body = {"user": str(a.user), "reusable": a.reusable, "ephemeral": a.ephemeral,
            "expiration": format_time(expiration), "aclTags": [t for t in a.tags.split(",") if t]}
    key = ctx.client().call("POST", "/api/v1/preauthkey", body)["preAuthKey"]
    ctx.emit(key, key["key"])


def list_(ctx: Context) -> None:
    keys = ctx.client().call("GET", "/api/v1/preauthkey", query={"user": str(ctx.args.user)})["preAuthKeys"]
    rows = [["ID", "Key", "Reusable", "Ephemeral", "Used", "Expiration", "Created", "Tags"]]
    for k in keys:
        rows.append([k["id"], k["key"], _b(k["reusable"]), _b(k["ephemeral"]), _b(k["used"]),
                     local_time(k["expiration"]) or "N/A", local_time(k["createdAt"]), ", ".join(k["aclTags"])])
    ctx.emit(keys, table(rows))


def expire(ctx: Context) -> None:
    result = ctx.client().call("POST", "/api/v1/preauthkey/expire", {"user": str(ctx.args.user), "key": ctx.args.key})
    ctx.emit(result, "Key expired")


def _b(value: bool) -> str:
    return "true" if value else "false"
