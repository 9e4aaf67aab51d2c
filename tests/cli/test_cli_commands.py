"""CLI parity against a real ``pyscale serve`` subprocess (tests/interop/harness.PyscaleServer).

Commands run in-process through ``pyscale.cli.main.main`` (the same code the console script runs;
the client still talks HTTP over the server's unix socket, or TCP with an API key in remote
mode), so each call costs milliseconds; a few run as real subprocesses to check exit codes.
Outputs are compared with Headscale v0.27.1's: tables (headers, cells), ``-o json`` (snake_case,
numeric ids/enums, {seconds,nanos}), json-line, yaml, and ``{"error": ...}`` + exit 1 on failure.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pyscale.cli.main import main
from tests.interop.harness import PyscaleServer

REG_ID = "abcdefghijklmnopqrstuvwx"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PyscaleServer]:
    srv = PyscaleServer(tmp_path_factory.mktemp("cli")).start()
    try:
        yield srv
    finally:
        srv.stop()


class Cli:
    def __init__(self, server: PyscaleServer, capsys: pytest.CaptureFixture[str]) -> None:
        self.server = server
        self.capsys = capsys

    def run(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["-c", str(self.server.config), *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def ok(self, *args: str) -> str:
        code, out, err = self.run(*args)
        assert code == 0, f"{args}: exit {code}\n{err}"
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))

    def fails(self, *args: str) -> tuple[str, str]:
        code, out, err = self.run(*args)
        assert code == 1, f"{args} should fail: {out}{err}"
        return out, err


@pytest.fixture
def cli(server: PyscaleServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(server, capsys)


def _table(out: str) -> list[list[str]]:
    return [[c.strip() for c in line.split(" | ")] for line in out.rstrip("\n").split("\n")]


def test_users_tables_json_yaml_and_errors(cli: Cli) -> None:
    assert cli.ok("users", "create", "alice", "-d", "Alice A", "-e", "alice@example.com") == "User created\n"
    assert cli.ok("users", "create", "bob") == "User created\n"
    rows = _table(cli.ok("users", "list"))
    assert rows[0] == ["ID", "Name", "Username", "Email", "Created"]
    assert rows[1][:4] == ["1", "Alice A", "alice", "alice@example.com"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows[1][4])
    users = cli.json("users", "list")
    assert users[0]["id"] == 1 and users[0]["name"] == "alice" and users[0]["display_name"] == "Alice A"
    assert set(users[0]["created_at"]) <= {"seconds", "nanos"} and "provider" not in users[0]  # omitempty
    line = cli.ok("users", "list", "-n", "bob", "-o", "json-line")
    assert "\n" not in line.rstrip("\n") and json.loads(line)[0]["name"] == "bob"
    doc = yaml.safe_load(cli.ok("users", "list", "-i", "2", "-o", "yaml"))
    assert doc[0]["name"] == "bob" and doc[0]["displayname"] == "" and "seconds" in doc[0]["createdat"]
    assert cli.json("users", "list", "-n", "nobody") is None  # a nil Go slice

    _, err = cli.fails("users", "create", "alice")
    assert err.startswith("Cannot create user: ")
    _, err = cli.fails("users", "create", "alice", "-o", "json")
    assert json.loads(err) == {"error": "rpc error: code = AlreadyExists desc = user 'alice' already exists"}
    _, err = cli.fails("users", "destroy", "--force")
    assert err == "Cannot destroy user: --name or --identifier flag is required\n"
    assert cli.ok("users", "rename", "-n", "bob", "-r", "robert") == "User renamed\n"
    assert cli.ok("users", "destroy", "-n", "robert", "--force") == "User destroyed\n"


def test_preauthkeys_and_apikeys(cli: Cli) -> None:
    cli.ok("users", "create", "carol")
    uid = str(cli.json("users", "list", "-n", "carol")[0]["id"])
    key = cli.ok("preauthkeys", "-u", uid, "create", "--reusable", "-e", "24h", "--tags", "tag:a,tag:b").strip()
    assert re.fullmatch(r"[0-9a-f]{48}", key)
    rows = _table(cli.ok("preauthkeys", "--user", uid, "list"))
    assert rows[0] == ["ID", "Key", "Reusable", "Ephemeral", "Used", "Expiration", "Created", "Tags"]
    assert rows[1][1:5] == [key, "true", "false", "false"] and rows[1][7] == "tag:a,tag:b"
    listed = cli.json("preauthkeys", "list", "-u", uid)
    assert listed[0]["key"] == key and listed[0]["acl_tags"] == ["tag:a", "tag:b"] and "used" not in listed[0]
    assert cli.ok("preauthkeys", "-u", uid, "expire", key) == "Key expired\n"
    _, err = cli.fails("preauthkeys", "-u", uid, "create", "-e", "soon")
    assert err.startswith("Could not parse duration")
    _, err = cli.fails("preauthkeys", "-u", uid, "create", "--tags", "web", "-o", "json")
    assert "InvalidArgument" in json.loads(err)["error"]

    api_key = cli.ok("apikeys", "create", "-e", "30d").strip()
    prefix, _, secret = api_key.partition(".")
    assert len(prefix) == 7 and len(secret) == 32
    rows = _table(cli.ok("apikeys", "list"))
    assert rows[0] == ["ID", "Prefix", "Expiration", "Created"] and any(r[1] == prefix for r in rows[1:])
    assert cli.ok("apikeys", "expire", "--prefix", prefix) == "Key expired\n"
    assert cli.ok("apikeys", "delete", "-p", prefix) == "Key deleted\n"
    _, err = cli.fails("apikeys", "delete", "-p", prefix)
    assert err.startswith("Cannot delete Api Key: rpc error: code = NotFound")


def test_nodes_verbs_with_a_debug_node(cli: Cli) -> None:
    cli.ok("users", "create", "dave")
    cli.ok("users", "create", "erin")
    ids = {u["name"]: u["id"] for u in cli.json("users", "list")}
    out = cli.ok("debug", "create-node", "--name", "gateway", "-u", "dave", "-k", REG_ID, "-r", "10.20.0.0/16",
                 "--route", "0.0.0.0/0,::/0")
    assert out == "Node created\n"
    assert cli.ok("nodes", "register", "-u", "dave", "-k", REG_ID) == "Node gateway registered\n"
    _, err = cli.fails("nodes", "register", "-u", "dave", "-k", "short")
    assert err == "Cannot register node: registration ID must be 24 characters long\n\n"

    rows = _table(cli.ok("nodes", "list", "--tags"))
    assert rows[0] == ["ID", "Hostname", "Name", "MachineKey", "NodeKey", "User", "IP addresses", "Ephemeral",
                       "Last seen", "Expiration", "Connected", "Expired", "ForcedTags", "InvalidTags",
                       "ValidTags"]
    row = next(r for r in rows[1:] if r[1] == "gateway")
    node_id = row[0]
    assert row[2] == "gateway" and row[5] == "dave" and re.fullmatch(r"100\.64\.\d+\.\d+, fd7a:\S+", row[6])
    assert re.fullmatch(r"\[[A-Za-z0-9+/]{5}\]", row[3]) and row[10] == "offline" and row[11] == "no"

    assert cli.ok("nodes", "tag", "-i", node_id, "-t", "tag:gw", "-t", "tag:edge") == "Node updated\n"
    assert cli.json("nodes", "list", "-u", "dave")[0]["forced_tags"] == ["tag:gw", "tag:edge"]
    _, err = cli.fails("nodes", "tag", "-i", node_id, "-t", "gw")
    assert "tag must start with the string 'tag:'" in err

    assert cli.ok("nodes", "approve-routes", "-i", node_id, "-r", "10.20.0.0/16,0.0.0.0/0") == "Node updated\n"
    routes = _table(cli.ok("nodes", "list-routes"))
    assert routes[0] == ["ID", "Hostname", "Approved", "Available", "Serving (Primary)"]
    assert routes[1][:4] == [node_id, "gateway", "0.0.0.0/0, 10.20.0.0/16, ::/0", "10.20.0.0/16, 0.0.0.0/0, ::/0"]
    old = _table(cli.ok("routes", "list"))
    assert old[0] == ["Node", "Route", "Enabled", "Primary"]
    assert old[1][:3] == ["gateway", "10.20.0.0/16", "true"]
    assert all(r[2] == "true" for r in old[1:]) and len(old) == 4

    assert cli.ok("nodes", "rename", "-i", node_id, "gw-1") == "Node renamed\n"
    assert cli.ok("nodes", "move", "-i", node_id, "-u", str(ids["erin"])) == "Node moved to another user\n"
    moved = cli.json("nodes", "list", "-u", "erin")
    assert moved[0]["given_name"] == "gw-1" and moved[0]["register_method"] == 2 and "tags" not in moved[0]
    _, err = cli.fails("nodes", "move", "-i", node_id, "-u", "999")
    assert err.startswith("Error moving node: ")
    assert cli.ok("nodes", "expire", "-i", node_id, "-e", "2031-02-03T04:05:06Z") == "Node expired\n"
    assert _table(cli.ok("nodes", "list"))[1][9] == "2031-02-03 04:05:06"
    assert cli.ok("nodes", "expire", "-i", node_id) == "Node expired\n"
    assert _table(cli.ok("nodes", "list"))[1][11] == "yes"
    assert cli.ok("nodes", "backfillips", "--force") == "Node IPs backfilled successfully\n"
    assert cli.ok("nodes", "delete", "-i", node_id, "--force") == "Node deleted\n"
    _, err = cli.fails("nodes", "delete", "-i", node_id, "--force")
    assert err == "Error getting node node: node not found\n"


def test_policy_generate_health_dumpconfig(cli: Cli, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.hujson", tmp_path / "bad.hujson"
    good.write_text('{\n  // everyone\n  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"],},],\n}\n')
    bad.write_text('{"acls": [}')
    assert cli.ok("policy", "check", "-f", str(good)) == "Policy is valid\n"
    _, err = cli.fails("policy", "check", "-f", str(bad))
    assert err.startswith("Error parsing the policy file: ")
    _, err = cli.fails("policy", "set", "-f", str(good))
    assert "update is disabled for modes other than 'database'" in err  # the harness runs policy.mode: file
    _, err = cli.fails("policy", "get")
    assert err.startswith("Failed loading ACL Policy: ")

    key = cli.ok("generate", "private-key").strip()
    assert re.fullmatch(r"privkey:[0-9a-f]{64}", key)
    assert set(cli.json("gen", "private-key")) == {"private_key"}
    assert cli.ok("health") == "\n"
    assert cli.json("health") == {"database_connectivity": True}
    dump = tmp_path / "dump.yaml"
    cli.ok("dumpConfig", "--path", str(dump))
    dumped = yaml.safe_load(dump.read_text())
    assert dumped["server_url"] == cli.server.url and "global" in dumped["dns"]["nameservers"]


def test_remote_mode_with_api_key(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    key = cli.ok("apikeys", "create").strip()
    monkeypatch.setenv("HEADSCALE_CLI_ADDRESS", cli.server.url)
    monkeypatch.setenv("HEADSCALE_CLI_API_KEY", key)
    assert cli.ok("users", "create", "remote-user") == "User created\n"
    assert "remote-user" in cli.ok("users", "list")
    monkeypatch.setenv("HEADSCALE_CLI_API_KEY", key[:-1] + ("A" if key[-1] != "A" else "B"))
    _, err = cli.fails("users", "list", "-o", "json")
    assert json.loads(err)["error"].startswith("rpc error: code = Unauthenticated")
    monkeypatch.delenv("HEADSCALE_CLI_API_KEY")
    _, err = cli.fails("users", "list")
    assert err == "HEADSCALE_CLI_API_KEY environment variable needs to be set.\n"


def test_real_subprocess_exit_codes(server: PyscaleServer) -> None:
    ok = server.cli("users", "list", "-o", "json")
    assert ok.returncode == 0 and isinstance(json.loads(ok.stdout), list)
    bad = subprocess.run([sys.executable, "-m", "pyscale.cli.main", "-c", str(server.config), "nodes", "delete",
                          "-i", "4242", "--force", "-o", "json"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and json.loads(bad.stderr)["error"].startswith("rpc error: code = NotFound")
    assert bad.stdout == ""


def test_policy_in_database_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = PyscaleServer(tmp_path)
    server.config.write_text(server.config.read_text() + "policy:\n  mode: database\n")
    server.start()
    try:
        cli = Cli(server, capsys)
        _, err = cli.fails("policy", "get")
        assert "record not found" in err
        text = '{\n  // allow all\n  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],\n}\n'
        policy = tmp_path / "policy.hujson"
        policy.write_text(text)
        assert cli.ok("policy", "set", "-f", str(policy)) == "Policy updated.\n"
        assert cli.ok("policy", "get") == text + "\n"
        assert cli.ok("policy", "get", "-o", "json") == text + "\n"  # get ignores -o
        policy.write_text('{"acls": [')
        _, err = cli.fails("policy", "set", "-f", str(policy))
        assert err.startswith("Failed to set ACL Policy: rpc error: code = Unknown desc = setting policy: ")
        assert cli.ok("policy", "get") == text + "\n"  # the bad one was not stored
    finally:
        server.stop()


def test_remote_mode_from_the_config_file(cli: Cli, tmp_path: Path) -> None:
    key = cli.ok("apikeys", "create").strip()
    remote = tmp_path / "remote.yaml"
    text = cli.server.config.read_text().replace(f"unix_socket: {cli.server.root}/pyscale.sock",
                                                 f"unix_socket: {tmp_path}/absent.sock")
    remote.write_text(text + f"cli:\n  address: {cli.server.url}\n  api_key: {key}\n")
    cli.capsys.readouterr()
    assert main(["-c", str(remote), "users", "create", "via-config"]) == 0
    assert cli.capsys.readouterr().out == "User created\n"
    assert "via-config" in cli.ok("users", "list", "-n", "via-config")


def test_deprecated_namespace_flag(cli: Cli) -> None:
    cli.ok("users", "create", "nsuser")
    code, out, err = cli.run("nodes", "list", "-n", "nsuser")
    assert code == 0 and err == "Flag --namespace has been deprecated, use --user\n"
    assert out.startswith("ID | Hostname")
