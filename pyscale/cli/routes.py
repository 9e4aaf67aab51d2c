"""``pyscale routes list``: the pre-0.26 verb old runbooks still call, kept as an alias.

Headscale 0.26 folded routes into nodes (``nodes list-routes``, ``nodes approve-routes``); this
prints the same data one route per row, as ``Node | Route | Enabled | Primary`` (Enabled =
approved, Primary = currently served by this node). ``-o`` prints the node list like list-routes.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from pyscale.cli.output import table

if TYPE_CHECKING:
    from pyscale.cli.context import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    routes = sub.add_parser("routes", aliases=["route", "r"], help="List the routes of nodes (old runbooks)")
    cmds = routes.add_subparsers(dest="routes_cmd", metavar="COMMAND", required=True)
    p = cmds.add_parser("list", aliases=["ls", "show"], help="List routes: Node | Route | Enabled | Primary")
    p.add_argument("-i", "--identifier", type=int, default=0, help="Node identifier (ID)")
    p.set_defaults(run=list_)


def route_rows(nodes: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["Node", "Route", "Enabled", "Primary"]]
    for n in nodes:
        approved, primary = set(n["approvedRoutes"]), set(n["subnetRoutes"])
        for route in dict.fromkeys(n["availableRoutes"] + n["approvedRoutes"]):
            rows.append([n["givenName"], route, str(route in approved).lower(), str(route in primary).lower()])
    return rows


def list_(ctx: Context) -> None:
    nodes = ctx.call("GET", "/api/v1/node", fail="Cannot get nodes: {}")["nodes"]
    if ctx.args.identifier:
        nodes = [n for n in nodes if n["id"] == str(ctx.args.identifier)]
    if ctx.output:
        ctx.emit(nodes, "")
        return
    print(table(route_rows(nodes)))
