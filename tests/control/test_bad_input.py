"""Bad input closes or answers one connection with a clear error; the server keeps serving.

Runs the real App in-process on loopback; the well-behaved client is an independent Noise
implementation (noiseprotocol) speaking h2, so these tests also exercise the happy path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from pyscale.app import App
from pyscale.config import load_config
from pyscale.keys import NodePublic, PrivateKey
from tests.control.noise_client import NoiseClient, initiation, upgrade_request

CONFIG = """\
server_url: http://127.0.0.1:{port}
listen_addr: 127.0.0.1:0
metrics_listen_addr: ""
unix_socket: {root}/pyscale.sock
noise:
  private_key_path: {root}/noise.key
prefixes:
  v4: 100.64.0.0/10
database:
  type: sqlite
  sqlite:
    path: {root}/db.sqlite
dns:
  magic_dns: false
  override_local_dns: false
derp:
  paths: []
"""


@pytest_asyncio.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    (tmp_path / "config.yaml").write_text(CONFIG.format(port=8080, root=tmp_path))
    application = App(load_config(str(tmp_path / "config.yaml")))
    await application.start()
    try:
        yield application
    finally:
        await application.stop()


def server_public(app: App) -> bytes:
    key = PrivateKey.parse((Path(app.cfg.noise.private_key_path)).read_text().strip())
    return key.public_raw()


async def raw_exchange(port: int, data: bytes, read_timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    out = bytearray()
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), read_timeout):
            out += chunk
    except (TimeoutError, ConnectionError):
        pass
    writer.close()
    return bytes(out)


async def register(app: App, machine: PrivateKey, auth_key: str | None, node: int = 1) -> dict[str, Any]:
    client = await NoiseClient.connect(app.listen_port, server_public(app), machine)
    body = {"Version": 130, "NodeKey": str(NodePublic(bytes([node]) * 32)), "OldNodeKey": str(NodePublic.zero()),
            "Auth": {"AuthKey": auth_key} if auth_key else None, "Expiry": "0001-01-01T00:00:00Z",
            "Hostinfo": {"Hostname": f"n{node}"}}
    status, raw = await client.request("/machine/register", body)
    client.close()
    assert status == 200
    result: dict[str, Any] = json.loads(raw)
    return result


async def still_serving(app: App) -> None:
    """A fresh, valid client can still register: the bad connection hurt no one else."""
    assert app.state is not None
    user = next(iter(app.state.users.values()), None) or await app.state.create_user("probe")
    key = await app.state.create_preauthkey(user.id, reusable=True, ephemeral=False, expiration=None, tags=[])
    resp = await register(app, PrivateKey.generate(), key.key, node=len(app.state.nodes) + 50)
    assert resp["MachineAuthorized"] is True, resp


@pytest.mark.asyncio
async def test_happy_path_and_key_errors(app: App) -> None:
    assert app.state is not None
    user = await app.state.create_user("alice")
    single = await app.state.create_preauthkey(user.id, reusable=False, ephemeral=False, expiration=None, tags=[])
    old = await app.state.create_preauthkey(user.id, reusable=True, ephemeral=False,
                                            expiration=datetime.now(UTC) - timedelta(minutes=1), tags=[])
    ok = await register(app, PrivateKey.generate(), single.key, 1)
    assert ok["MachineAuthorized"] is True and ok["User"]["DisplayName"] == "alice"
    assert (await register(app, PrivateKey.generate(), single.key, 2))["Error"] == "authkey already used"
    assert (await register(app, PrivateKey.generate(), old.key, 3))["Error"] == "authkey expired"
    assert "AuthKey not found" in (await register(app, PrivateKey.generate(), "f" * 48, 4))["Error"]
    node = app.state.node_by_node_key(NodePublic(bytes([1]) * 32))
    assert node is not None and node.user_id == user.id


@pytest.mark.asyncio
async def test_malformed_upgrades_are_answered(app: App) -> None:
    port = app.listen_port
    init, _ = initiation(server_public(app), PrivateKey.generate())
    bad_b64 = upgrade_request(port, init).replace(b"X-Tailscale-Handshake: ", b"X-Tailscale-Handshake: !!")
    assert b"400" in (await raw_exchange(port, bad_b64)).split(b"\r\n")[0]
    short = upgrade_request(port, init[:-1])
    answer = await raw_exchange(port, short)
    assert answer.startswith(b"HTTP/1.1 101") and b"\x03\x00\x1fwrong handshake initiation size" in answer
    old = upgrade_request(port, (89).to_bytes(2, "big") + init[2:])
    assert b"unsupported client version: 89" in await raw_exchange(port, old)
    no_upgrade = f"POST /ts2021 HTTP/1.1\r\nHost: x:{port}\r\nContent-Length: 0\r\n\r\n".encode()
    assert b"Upgrade header" in await raw_exchange(port, no_upgrade)
    assert b"400" in (await raw_exchange(port, b"NOT HTTP AT ALL\r\n\r\n")).split(b"\r\n")[0]
    await still_serving(app)


@pytest.mark.asyncio
@pytest.mark.parametrize("garbage", [
    b"\x04\xff\xff" + bytes(100),  # record larger than 4096 bytes
    b"\x05\x00\x10" + bytes(16),  # not a record type
    b"\x04\x00\x20" + bytes(32),  # record that fails authentication
])
async def test_bad_records_close_one_connection(app: App, garbage: bytes) -> None:
    client = await NoiseClient.connect(app.listen_port, server_public(app), PrivateKey.generate())
    client.writer.write(garbage)
    rest = await asyncio.wait_for(client.reader.read(), 10)  # server closes after its SETTINGS
    assert client.reader.at_eof(), rest
    await still_serving(app)


@pytest.mark.asyncio
async def test_garbage_http2_inside_valid_records(app: App) -> None:
    client = await NoiseClient.connect(app.listen_port, server_public(app), PrivateKey.generate())
    client.writer.write(client.enc.encrypt(b"\x00\x00\x08\x07\x00\x00\x00\x00\x01" + b"garbage!" * 20))
    await asyncio.wait_for(client.reader.read(), 10)
    assert client.reader.at_eof()
    await still_serving(app)


@pytest.mark.asyncio
async def test_map_for_foreign_node_key_is_refused(app: App) -> None:
    assert app.state is not None
    user = await app.state.create_user("alice")
    key = await app.state.create_preauthkey(user.id, reusable=True, ephemeral=False, expiration=None, tags=[])
    await register(app, PrivateKey.generate(), key.key, 7)
    intruder = await NoiseClient.connect(app.listen_port, server_public(app), PrivateKey.generate())
    status, _ = await intruder.request("/machine/map", {"Version": 130, "NodeKey": str(NodePublic(bytes([7]) * 32)),
                                                        "Stream": False, "OmitPeers": True, "Compress": "zstd"})
    assert status == 404
    intruder.close()


@pytest.mark.asyncio
async def test_hostname_changes_follow_unless_renamed(app: App) -> None:
    assert app.state is not None
    user = await app.state.create_user("alice")
    key = await app.state.create_preauthkey(user.id, reusable=True, ephemeral=False, expiration=None, tags=[])
    machine = PrivateKey.generate()
    await register(app, machine, key.key, 9)
    node_key = NodePublic(bytes([9]) * 32)

    async def report(hostname: str) -> None:
        client = await NoiseClient.connect(app.listen_port, server_public(app), machine)
        status, _ = await client.request("/machine/map", {"Version": 130, "NodeKey": str(node_key), "Stream": False,
                                                          "OmitPeers": True, "Compress": "zstd",
                                                          "Hostinfo": {"Hostname": hostname}})
        client.close()
        assert status == 200

    await report("Beta")
    node = app.state.node_by_node_key(node_key)
    assert node is not None and (node.hostname, node.given_name) == ("beta", "beta")
    await app.state.rename_node(node.id, "custom")
    await report("gamma")
    node = app.state.node_by_node_key(node_key)
    assert node is not None and (node.hostname, node.given_name) == ("gamma", "custom")
    await report("not valid!")
    assert app.state.node(node.id).hostname == "gamma"
