"""CLI golden tests: each list verb's table and machine outputs for a fixed database.

The database is written record by record with fixed ids, keys, addresses and times, then a real
``pyscale serve`` serves it and the CLI prints. Nodes are offline (no client), expiries are far
past or far future, so every byte is stable. Regenerate with ``PYSCALE_UPDATE_GOLDEN=1`` and
review the diff against Headscale v0.27.1's formats (headscale-facts §2).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
import pytest

from pyscale.cli.main import main
from pyscale.db import Database
from pyscale.keys import MachinePublic, NodePublic
from pyscale.state.model import ZERO_TIME, ApiKey, Node, PreAuthKey, User
from tests.interop.harness import PyscaleServer

GOLDEN = Path(__file__).resolve().parent / "golden"
T0 = datetime(2025, 11, 11, 10, 20, 30, tzinfo=UTC)
PAST = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
FUTURE = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)
COMMANDS = {
    "users_list": ["users", "list"],
    "nodes_list": ["nodes", "list"],
    "nodes_list_tags": ["nodes", "list", "--tags"],
    "nodes_list_user": ["nodes", "list", "-u", "bob"],
    "nodes_list_routes": ["nodes", "list-routes"],
    "routes_list": ["routes", "list"],
    "preauthkeys_list": ["preauthkeys", "-u", "1", "list"],
    "apikeys_list": ["apikeys", "list"],
}


async def _fill(path: Path) -> None:
    db = await Database.open(str(path))
    try:
        await db.insert_user(User(0, "alice", "Alice Liddell", "alice@example.com", created_at=T0, updated_at=T0))
        await db.insert_user(User(0, "bob", created_at=T0, updated_at=T0))
        await db.insert_preauthkey(PreAuthKey(0, "a1" * 24, 1, reusable=True, tags=["tag:web", "tag:db"],
                                              expiration=FUTURE, created_at=T0))
        await db.insert_preauthkey(PreAuthKey(0, "b2" * 24, 1, ephemeral=True, used=True, expiration=PAST,
                                              created_at=T0))
        hashed = bcrypt.hashpw(b"s" * 32, bcrypt.gensalt(4, prefix=b"2a"))
        await db.insert_apikey(ApiKey(0, "abcdefg", hashed, expiration=FUTURE, created_at=T0))
        await db.insert_apikey(ApiKey(0, "hijklmn", hashed, expiration=PAST, created_at=T0))
        await db.insert_node(Node(
            0, MachinePublic(bytes(range(32))), NodePublic(bytes(range(1, 33))),
            hostinfo={"Hostname": "gateway", "RoutableIPs": ["10.1.0.0/16", "0.0.0.0/0", "::/0"],
                      "RequestTags": ["tag:gw"]},
            ipv4=ipaddress.IPv4Address("100.64.0.1"), ipv6=ipaddress.IPv6Address("fd7a:115c:a1e0::1"),
            hostname="gateway", given_name="gateway", user_id=1, register_method="authkey",
            forced_tags=["tag:router"], auth_key_id=1, last_seen=T0, expiry=ZERO_TIME,
            approved_routes=["10.1.0.0/16"], created_at=T0, updated_at=T0))
        await db.insert_node(Node(
            0, MachinePublic(bytes(range(2, 34))), NodePublic(bytes(range(3, 35))),
            hostinfo={"Hostname": "Bob's Laptop"}, ipv4=ipaddress.IPv4Address("100.64.0.2"),
            ipv6=ipaddress.IPv6Address("fd7a:115c:a1e0::2"), hostname="Bob's Laptop", given_name="bobs-laptop",
            user_id=2, register_method="cli", last_seen=PAST, expiry=PAST, created_at=T0, updated_at=T0))
        await db.insert_node(Node(
            0, MachinePublic(bytes(range(4, 36))), NodePublic(bytes(range(5, 37))), hostinfo={"Hostname": "phone"},
            ipv4=ipaddress.IPv4Address("100.64.0.3"), hostname="phone", given_name="phone", user_id=1,
            register_method="authkey", auth_key_id=2, expiry=FUTURE, created_at=T0, updated_at=T0))
    finally:
        await db.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PyscaleServer]:
    root = tmp_path_factory.mktemp("golden")
    asyncio.run(_fill(root / "db.sqlite"))
    srv = PyscaleServer(root).start()
    try:
        yield srv
    finally:
        srv.stop()


def _run(server: PyscaleServer, capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    capsys.readouterr()
    assert main(["-c", str(server.config), *args]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(COMMANDS))
@pytest.mark.parametrize("fmt", ["table", "json", "json-line", "yaml"])
def test_golden(server: PyscaleServer, capsys: pytest.CaptureFixture[str], name: str, fmt: str) -> None:
    args = COMMANDS[name] + ([] if fmt == "table" else ["-o", fmt])
    out = _run(server, capsys, args)
    golden = GOLDEN / f"{name}.{fmt}.txt"
    if os.environ.get("PYSCALE_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(out)
    assert out == golden.read_text(), f"{' '.join(args)} differs from {golden.name}"
