"""Child process for test_db_crash.py: registers nodes forever, printing each id once acknowledged.

A line ``<id> <node_key>`` is printed (and flushed) only after ``insert_node`` returned, i.e. after
the commit; the parent kills this process with SIGKILL at an arbitrary moment and then checks
that every printed registration is in the file.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import sys
from datetime import UTC, datetime

from pyscale.db import Database
from pyscale.keys import MachinePublic, NodePublic
from pyscale.state.model import ZERO_TIME, Node, PreAuthKey, User


async def main(path: str, tag: str) -> None:
    db = await Database.open(path)
    now = datetime.now(UTC)
    user_id = await db.insert_user(User(id=0, name=f"crash-{tag}", created_at=now, updated_at=now))
    print(f"user {user_id}", flush=True)
    i = 0
    while True:
        i += 1
        node_key = NodePublic(os.urandom(32))
        if i % 2:
            node_id = await db.insert_node(_node(node_key, user_id, None, i))
        else:
            # every other registration uses a pre-auth key: two writes in one transaction
            async with db.transaction():
                key_id = await db.insert_preauthkey(
                    PreAuthKey(id=0, key=os.urandom(24).hex(), user_id=user_id, used=True, created_at=now)
                )
                node_id = await db.insert_node(_node(node_key, user_id, key_id, i))
        sys.stdout.write(f"{node_id} {node_key}\n")
        sys.stdout.flush()


def _node(node_key: NodePublic, user_id: int, key_id: int | None, i: int) -> Node:
    now = datetime.now(UTC)
    return Node(
        id=0, machine_key=MachinePublic(os.urandom(32)), node_key=node_key, user_id=user_id,
        auth_key_id=key_id, hostname=f"n{i}", given_name=f"n{i}", register_method="authkey",
        ipv4=ipaddress.IPv4Address(0x64400000 + i), expiry=ZERO_TIME, created_at=now, updated_at=now,
        hostinfo={"Hostname": f"n{i}", "Padding": "x" * 2000},  # bigger rows: WAL frames and checkpoints
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
