"""``pyscale nodes``: list, register, expire, rename, delete (Headscale v0.27.1 flags and table)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyscale.cli.output import local_time, table
from pyscale.keys import KeyError_, MachinePublic, NodePublic
from pyscale.tailcfg.timefmt import parse_time

if TYPE_CHECKING:
    from pyscale.cli.main import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    nodes = sub.add_parser("nodes", aliases=["node", "machine", "machines"], help="manage nodes")
    cmds = nodes.add_subparsers(dest="nodes_cmd", metavar="COMMAND", required=True)
    p = cmds.add_parser("list", aliases=["ls", "show"], help="list nodes")
    p.add_argument("-u", "--user", default="", help="user name")
    p.add_argument("-t", "--tags", action="store_true", help="show tags")
    p.set_defaults(run=list_)
    p = cmds.add_parser("register", help="register a node waiting on /register/<key>")
    p.add_argument("-u", "--user", required=True, help="user name")
    p.add_argument("-k", "--key", required=True, help="registration id")
    p.set_defaults(run=register_node)
    p = cmds.add_parser("expire", aliases=["logout", "exp", "e"], help="expire (log out) a node")
    p.add_argument("-i", "--identifier", type=int, required=True)
    p.add_argument("-e", "--expiry", default="", help="RFC 3339 time (default: now)")
    p.set_defaults(run=expire)
    p = cmds.add_parser("rename", help="rename a node")
    p.add_argument("new_name")
    p.add_argument("-i", "--identifier", type=int, required=True)
    p.set_defaults(run=rename)
    p = cmds.add_parser("delete", aliases=["del"], help="delete a node")
    p.add_argument("-i", "--identifier", type=int, required=True)
    p.set_defaults(run=delete)


def _short(cls: type[MachinePublic] | type[NodePublic], text: str) -> str:
    try:
        return cls.parse(text).short()
    except KeyError_:
        return text


def _expired(expiry: str | None) -> bool:
    if not expiry:
        return False
    t = parse_time(expiry)
    return t.year > 1 and t <= datetime.now(UTC)


def node_rows(nodes: list[dict[str, Any]], with_tags: bool) -> list[list[str]]:
    header = ["ID", "Hostname", "Name", "MachineKey", "NodeKey", "User", "IP addresses", "Ephemeral",
              "Last seen", "Expiration", "Connected", "Expired"]
    if with_tags:
        header += ["ForcedTags", "InvalidTags", "ValidTags"]
    rows = [header]
    for n in nodes:
        expiry = n["expiry"]
        row = [n["id"], n["name"], n["givenName"], _short(MachinePublic, n["machineKey"]),
               _short(NodePublic, n["nodeKey"]), (n["user"] or {}).get("name", ""), ", ".join(n["ipAddresses"]),
               "true" if (n["preAuthKey"] or {}).get("ephemeral") else "false", local_time(n["lastSeen"]),
               local_time(expiry) if expiry else "N/A", "online" if n["online"] else "offline",
               "yes" if _expired(expiry) else "no"]
        if with_tags:
            row += [", ".join(n["forcedTags"]), ", ".join(n["invalidTags"]), ", ".join(n["validTags"])]
        rows.append(row)
    return rows


def list_(ctx: Context) -> None:
    query = {"user": ctx.args.user} if ctx.args.user else None
    nodes = ctx.client().call("GET", "/api/v1/node", query=query)["nodes"]
    ctx.emit(nodes, table(node_rows(nodes, ctx.args.tags)))


def register_node(ctx: Context) -> None:
    node = ctx.client().call("POST", "/api/v1/node/register", query={"user": ctx.args.user, "key": ctx.args.key})
    ctx.emit(node["node"], f"Node {node['node']['givenName']} registered")


def expire(ctx: Context) -> None:
    query = {"expiry": ctx.args.expiry} if ctx.args.expiry else None
    node = ctx.client().call("POST", f"/api/v1/node/{ctx.args.identifier}/expire", query=query)
    ctx.emit(node["node"], "Node expired")


def rename(ctx: Context) -> None:
    node = ctx.client().call("POST", f"/api/v1/node/{ctx.args.identifier}/rename/{ctx.args.new_name}")
    ctx.emit(node["node"], "Node renamed")


def delete(ctx: Context) -> None:
    if not ctx.args.force:
        try:
            ok = input(f"Do you want to remove the node {ctx.args.identifier}? [y/N] ").strip().lower() in ("y", "yes")
        except EOFError:
            ok = False
        if not ok:
            ctx.emit(None, "Node not deleted")
            return
    result = ctx.client().call("DELETE", f"/api/v1/node/{ctx.args.identifier}")
    ctx.emit(result, "Node deleted")
