"""``pyscale users``: create, list, rename, destroy (Headscale v0.27.1 flags, messages and table).

One deliberate fix: ``users rename --name OLD`` works (Headscale 0.27.1 sends id 2^64-1 then).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pyscale.cli.client import segment
from pyscale.cli.output import table, table_time

if TYPE_CHECKING:
    from pyscale.cli.context import Context

AMBIGUOUS = "Unable to determine user to delete, query returned multiple users, use ID"


def _id_and_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--identifier", type=int, default=-1, help="User identifier (ID)")
    p.add_argument("-n", "--name", default="", help="Username")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = sub.add_parser("users", aliases=["user", "namespace", "namespaces", "ns"],
                           help="Manage the users of Headscale")
    cmds = users.add_subparsers(dest="users_cmd", metavar="COMMAND", required=True)
    p = cmds.add_parser("create", aliases=["c", "new"], help="Creates a new user")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-d", "--display-name", default="", help="Display name")
    p.add_argument("-e", "--email", default="", help="Email")
    p.add_argument("-p", "--picture-url", default="", help="Profile picture URL")
    p.set_defaults(run=create)
    p = cmds.add_parser("list", aliases=["ls", "show"], help="List all the users")
    _id_and_name(p)
    p.add_argument("-e", "--email", default="", help="Email")
    p.set_defaults(run=list_)
    p = cmds.add_parser("rename", aliases=["mv"], help="Renames a user")
    _id_and_name(p)
    p.add_argument("-r", "--new-name", default="", help="New username")
    p.set_defaults(run=rename)
    p = cmds.add_parser("destroy", aliases=["delete"], help="Destroys a user")
    _id_and_name(p)
    p.set_defaults(run=destroy)


def _find(ctx: Context, verb: str) -> dict[str, Any]:
    from pyscale.cli.context import CliError

    a = ctx.args
    if not a.name and a.identifier < 0:
        err = "--name or --identifier flag is required"
        raise CliError(f"Cannot {verb} user: {err}", err)
    query = {"name": a.name} if a.name else {"id": str(a.identifier)}
    found = ctx.call("GET", "/api/v1/user", query=query, fail="Error: {}")["users"]
    if len(found) != 1:
        raise CliError(f"Error: {AMBIGUOUS}", AMBIGUOUS)
    user: dict[str, Any] = found[0]
    return user


def create(ctx: Context) -> None:
    from pyscale.cli.context import CliError

    a = ctx.args
    if a.picture_url and not urlsplit(a.picture_url).scheme:
        err = f'parse "{a.picture_url}": invalid URI for request'
        raise CliError(f"Invalid Picture URL: {err}", err)
    body = {"name": a.name, "displayName": a.display_name, "email": a.email, "pictureUrl": a.picture_url}
    user = ctx.call("POST", "/api/v1/user", body, fail="Cannot create user: {}")["user"]
    ctx.emit(user, "User created")


def list_(ctx: Context) -> None:
    a = ctx.args
    query = {}
    if a.identifier > 0:
        query["id"] = str(a.identifier)
    elif a.name:
        query["name"] = a.name
    elif a.email:
        query["email"] = a.email
    users = ctx.call("GET", "/api/v1/user", query=query, fail="Cannot get users: {}")["users"]
    if ctx.output:
        ctx.emit(users, "")
        return
    rows = [["ID", "Name", "Username", "Email", "Created"]]
    rows += [[u["id"], u["displayName"], u["name"], u["email"], table_time(u["createdAt"])] for u in users]
    print(table(rows))


def rename(ctx: Context) -> None:
    user = _find(ctx, "rename")
    path = f"/api/v1/user/{user['id']}/rename/{segment(ctx.args.new_name)}"
    renamed = ctx.call("POST", path, fail="Cannot rename user: {}")["user"]
    ctx.emit(renamed, "User renamed")


def destroy(ctx: Context) -> None:
    user = _find(ctx, "destroy")
    question = f'Do you want to remove the user "{user["name"]}" ({user["id"]}) and any associated preauthkeys?'
    if not ctx.force and not ctx.confirm(question):
        ctx.emit({"Result": "User not destroyed"}, "User not destroyed", plain=True)
        return
    result = ctx.call("DELETE", f"/api/v1/user/{user['id']}", fail="Cannot destroy user: {}")
    ctx.emit(result, "User destroyed")
