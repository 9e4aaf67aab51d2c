"""``pyscale nodes``: Headscale v0.27.1's node verbs with its flags, messages and tables.

list (``-u`` user name, ``-t`` tag columns), register, list-routes, expire, rename, delete, move
(``-u`` numeric user id), tag, approve-routes, backfillips. ``routes list`` (the pre-0.26 verb
from old runbooks) is in cli/routes.py.
"""

from __future__ import annotations

import argparse
import ipaddress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyscale.cli.client import segment
from pyscale.cli.output import local_time, table, table_time
from pyscale.keys import KeyError_, MachinePublic, NodePublic
from pyscale.tailcfg.timefmt import TimeFormatError, format_time, parse_time

if TYPE_CHECKING:
    from pyscale.cli.context import Context

NODE_ID_HELP = "Node identifier (ID)"


def _deprecated_namespace(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", default="", help=argparse.SUPPRESS)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    nodes = sub.add_parser("nodes", aliases=["node", "machine", "machines"], help="Manage the nodes of Headscale")
    cmds = nodes.add_subparsers(dest="nodes_cmd", metavar="COMMAND", required=True)
    p = cmds.add_parser("list", aliases=["ls", "show"], help="List nodes")
    p.add_argument("-u", "--user", default="", help="Filter by user")
    p.add_argument("-t", "--tags", action="store_true", help="Show tags")
    _deprecated_namespace(p)
    p.set_defaults(run=list_)
    p = cmds.add_parser("list-routes", aliases=["lsr", "routes"], help="List routes available on nodes")
    p.add_argument("-i", "--identifier", type=int, default=0, help=NODE_ID_HELP)
    p.set_defaults(run=list_routes)
    p = cmds.add_parser("register", help="Registers a node to your network")
    p.add_argument("-u", "--user", required=True, help="User")
    p.add_argument("-k", "--key", required=True, help="Key")
    _deprecated_namespace(p)
    p.set_defaults(run=register_node)
    p = cmds.add_parser("expire", aliases=["logout", "exp", "e"], help="Expire (log out) a node in your network")
    p.add_argument("-i", "--identifier", type=int, required=True, help=NODE_ID_HELP)
    p.add_argument("-e", "--expiry", default="", help="Set expire to (RFC3339 format, e.g. 2025-08-27T10:00:00Z), "
                   "or leave empty to expire immediately.")
    p.set_defaults(run=expire)
    p = cmds.add_parser("rename", help="Renames a node in your network")
    p.add_argument("new_name", nargs="?", default="", metavar="NEW_NAME")
    p.add_argument("-i", "--identifier", type=int, required=True, help=NODE_ID_HELP)
    p.set_defaults(run=rename)
    p = cmds.add_parser("delete", aliases=["del"], help="Delete a node")
    p.add_argument("-i", "--identifier", type=int, required=True, help=NODE_ID_HELP)
    p.set_defaults(run=delete)
    p = cmds.add_parser("move", aliases=["mv"], help="Move node to another user")
    p.add_argument("-i", "--identifier", type=int, required=True, help=NODE_ID_HELP)
    p.add_argument("-u", "--user", type=int, required=True, help="New user")
    _deprecated_namespace(p)
    p.set_defaults(run=move)
    p = cmds.add_parser("tag", aliases=["tags", "t"], help="Manage the tags of a node")
    p.add_argument("-i", "--identifier", type=int, required=True, help=NODE_ID_HELP)
    p.add_argument("-t", "--tags", action="append", default=[], help="List of tags to add to the node")
    p.set_defaults(run=tag)
    p = cmds.add_parser("approve-routes", help="Manage the approved routes of a node")
    p.add_argument("-i", "--identifier", type=int, required=True, help=NODE_ID_HELP)
    p.add_argument("-r", "--routes", action="append", default=[], help="List of routes that will be approved "
                   '(comma-separated, e.g. "10.0.0.0/8,192.168.0.0/24" or empty string to remove all approved routes)')
    p.set_defaults(run=approve_routes)
    p = cmds.add_parser("backfillips", help="Backfill IPs missing from nodes")
    p.set_defaults(run=backfill)


def string_slice(values: list[str]) -> list[str]:
    """cobra StringSlice: repeated flags and comma-separated values; an empty value means none."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _short(cls: type[MachinePublic] | type[NodePublic], text: str) -> str:
    try:
        return cls.parse(text).short()
    except KeyError_:
        return cls.zero().short()


def _expired(expiry: str | None) -> bool:
    if not expiry:
        return False
    t = parse_time(expiry)
    return t.year > 1 and t <= datetime.now(UTC)


def _ips(addresses: list[str]) -> str:
    v4 = next((a for a in addresses if ipaddress.ip_address(a).version == 4), "")
    v6 = next((a for a in addresses if ipaddress.ip_address(a).version == 6), "")
    return f"{v4}, {v6}"


def node_rows(nodes: list[dict[str, Any]], with_tags: bool) -> list[list[str]]:
    header = ["ID", "Hostname", "Name", "MachineKey", "NodeKey", "User", "IP addresses", "Ephemeral",
              "Last seen", "Expiration", "Connected", "Expired"]
    if with_tags:
        header += ["ForcedTags", "InvalidTags", "ValidTags"]
    rows = [header]
    for n in nodes:
        expiry = n["expiry"]
        row = [n["id"], n["name"], n["givenName"], _short(MachinePublic, n["machineKey"]),
               _short(NodePublic, n["nodeKey"]), (n["user"] or {}).get("name", ""), _ips(n["ipAddresses"]),
               "true" if (n["preAuthKey"] or {}).get("ephemeral") else "false", local_time(n["lastSeen"]),
               table_time(expiry) if expiry else "N/A", "online" if n["online"] else "offline",
               "yes" if _expired(expiry) else "no"]
        if with_tags:
            forced = n["forcedTags"]
            row += [",".join(forced), ",".join(t for t in n["invalidTags"] if t not in forced),
                    ",".join(t for t in n["validTags"] if t not in forced)]
        rows.append(row)
    return rows


def route_rows(nodes: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["ID", "Hostname", "Approved", "Available", "Serving (Primary)"]]
    for n in nodes:
        rows.append([n["id"], n["givenName"], ", ".join(n["approvedRoutes"]), ", ".join(n["availableRoutes"]),
                     ", ".join(n["subnetRoutes"])])
    return rows


def list_(ctx: Context) -> None:
    user = ctx.user_or_namespace()
    query = {"user": user} if user else None
    nodes = ctx.call("GET", "/api/v1/node", query=query, fail="Cannot get nodes: {}")["nodes"]
    if ctx.output:
        ctx.emit(nodes, "")
        return
    print(table(node_rows(nodes, ctx.args.tags)))


def list_routes(ctx: Context) -> None:
    nodes = ctx.call("GET", "/api/v1/node", fail="Cannot get nodes: {}")["nodes"]
    if ctx.output:
        ctx.emit(nodes, "")  # 0.27.1 prints every node here, the -i filter applies to the table only
        return
    if ctx.args.identifier:
        nodes = [n for n in nodes if n["id"] == str(ctx.args.identifier)][:1] or nodes
    nodes = [n for n in nodes if n["subnetRoutes"] or n["approvedRoutes"] or n["availableRoutes"]]
    print(table(route_rows(nodes)))


def register_node(ctx: Context) -> None:
    user = ctx.user_or_namespace()
    node = ctx.call("POST", "/api/v1/node/register", query={"user": user, "key": ctx.args.key},
                    fail="Cannot register node: {}\n")["node"]
    ctx.emit(node, f"Node {node['givenName']} registered")


def expire(ctx: Context) -> None:
    from pyscale.cli.context import CliError

    when = datetime.now(UTC)
    if ctx.args.expiry:
        try:
            when = parse_time(ctx.args.expiry)
        except TimeFormatError as exc:
            raise CliError(f"Error converting expiry to string: {exc}", str(exc)) from None
    node = ctx.call("POST", f"/api/v1/node/{ctx.args.identifier}/expire", query={"expiry": format_time(when)},
                    fail="Cannot expire node: {}\n")["node"]
    ctx.emit(node, "Node expired")


def rename(ctx: Context) -> None:
    path = f"/api/v1/node/{ctx.args.identifier}/rename/{segment(ctx.args.new_name)}"
    node = ctx.call("POST", path, fail="Cannot rename node: {}\n")["node"]
    ctx.emit(node, "Node renamed")


def delete(ctx: Context) -> None:
    node_id = ctx.args.identifier
    node = ctx.call("GET", f"/api/v1/node/{node_id}", fail="Error getting node node: {}")["node"]
    if not ctx.force and not ctx.confirm(f"Do you want to remove the node {node['name']}?"):
        ctx.emit({"Result": "Node not deleted"}, "Node not deleted", plain=True)
        return
    result = ctx.call("DELETE", f"/api/v1/node/{node_id}", fail="Error deleting node: {}")
    if ctx.output:
        ctx.emit(result, "")
        return
    print("Node deleted")


def move(ctx: Context) -> None:
    node_id = ctx.args.identifier
    ctx.call("GET", f"/api/v1/node/{node_id}", fail="Error getting node: {}")
    node = ctx.call("POST", f"/api/v1/node/{node_id}/user", {"user": str(ctx.args.user)},
                    fail="Error moving node: {}")["node"]
    ctx.emit(node, "Node moved to another user")


def tag(ctx: Context) -> None:
    body = {"tags": string_slice(ctx.args.tags)}
    node = ctx.call("POST", f"/api/v1/node/{ctx.args.identifier}/tags", body,
                    fail="Error while sending tags to headscale: {}", raw_only=True)["node"]
    ctx.emit(node, "Node updated")


def approve_routes(ctx: Context) -> None:
    body = {"routes": string_slice(ctx.args.routes)}
    node = ctx.call("POST", f"/api/v1/node/{ctx.args.identifier}/approve_routes", body,
                    fail="Error while sending routes to headscale: {}", raw_only=True)["node"]
    ctx.emit(node, "Node updated")


def backfill(ctx: Context) -> None:
    if not ctx.force and not ctx.confirm("Are you sure that you want to assign/remove IPs to/from nodes?"):
        return
    result = ctx.call("POST", "/api/v1/node/backfillips", query={"confirmed": "true"},
                      fail="Error backfilling IPs: {}")
    ctx.emit(result, "Node IPs backfilled successfully")
