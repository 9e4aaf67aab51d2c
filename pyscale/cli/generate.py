"""``pyscale generate private-key`` (alias ``gen``): a new machine private key, ``privkey:<64 hex>``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pyscale.keys import PrivateKey

if TYPE_CHECKING:
    from pyscale.cli.context import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gen = sub.add_parser("generate", aliases=["gen"], help="Generate commands")
    cmds = gen.add_subparsers(dest="generate_cmd", metavar="COMMAND", required=True)
    p = cmds.add_parser("private-key", help="Generate a private key for the headscale server")
    p.set_defaults(run=private_key)


def private_key(ctx: Context) -> None:
    from pyscale.cli.output import render_plain

    text = str(PrivateKey.generate())
    print(render_plain({"private_key": text}, ctx.output) if ctx.output else text)
