"""``pyscale users``: create, list, rename, destroy (Headscale v0.27.1 flags and outputs)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from pyscale.cli.output import local_time, table

if TYPE_CHECKING:
    from pyscale.cli.main import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = sub.add_parser("users", aliases=["user", "namespace", "namespaces", "ns"], help="manage users")
    cmds = users.add_subparsers(dest="users_cmd", metavar="COMMAND", required=True)
    p = cmds.add_parser("create", aliases=["c", "new"], help="create a user")
    p.add_argument("name")
    p.add_argument("-d", "--display-name", default="")
    p.add_argument("-e", "--email", default="")
    p.add_argument("-p", "--picture-url", default="")
    p.set_defaults(run=create)
    p = cmds.add_parser("list", aliases=["ls", "show"], help="list users")
    p.add_argument("-i", "--identifier", type=int)
    p.add_argument("-n", "--name")
    p.add_argument("-e", "--email")
    p.set_defaults(run=list_)
    p = cmds.add_parser("rename", aliases=["mv"], help="rename a user")
    p.add_argument("-i", "--identifier", type=int)
    p.add_argument("-n", "--name")
    p.add_argument("-r", "--new-name", required=True)
    p.set_defaults(run=rename)
    p = cmds.add_parser("destroy", aliases=["delete"], help="delete a user")
    p.add_argument("-i", "--identifier", type=int)
    p.add_argument("-n", "--name")
    p.set_defaults(run=destroy)


def _find(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    query = {}
    if args.identifier is not None:
        query["id"] = str(args.identifier)
    elif args.name:
        query["name"] = args.name
    else:
        from pyscale.cli.main import CliError

        raise CliError("--identifier or --name is required")
    found = ctx.client().call("GET", "/api/v1/user", query=query)["users"]
    if len(found) != 1:
        from pyscale.cli.main import CliError

        raise CliError(f"Unable to determine user: {len(found)} users match")
    user: dict[str, Any] = found[0]
    return user


def create(ctx: Context) -> None:
    a = ctx.args
    body = {"name": a.name, "displayName": a.display_name, "email": a.email, "pictureUrl": a.picture_url}
    user = ctx.client().call("POST", "/api/v1/user", body)["user"]
    ctx.emit(user, "User created")


def list_(ctx: Context) -> None:
    a = ctx.args
    query = {k: str(v) for k, v in (("id", a.identifier), ("name", a.name), ("email", a.email)) if v}
    users = ctx.client().call("GET", "/api/v1/user", query=query)["users"]
    rows = [["ID", "Name", "Username", "Email", "Created"]]
    rows += [[u["id"], u["displayName"], u["name"], u["email"], local_time(u["createdAt"])] for u in users]
    ctx.emit(users, table(rows))


def rename(ctx: Context) -> None:
    user = _find(ctx)
    renamed = ctx.client().call("POST", f"/api/v1/user/{user['id']}/rename/{ctx.args.new_name}")["user"]
    ctx.emit(renamed, "User renamed")


def destroy(ctx: Context) -> None:
    user = _find(ctx)
    if not ctx.args.force and not _confirm(f"Do you want to remove the user {user['name']!r} and any associated "
                                           "preauthkeys?"):
        ctx.emit({}, "User not destroyed")
        return
    result = ctx.client().call("DELETE", f"/api/v1/user/{user['id']}")
    ctx.emit(result, "User destroyed")


def _confirm(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False
