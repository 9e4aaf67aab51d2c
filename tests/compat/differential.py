"""Run one sequence of operations against a control server and capture what it answers.

The same ``run_scenario`` drives pyscale and Headscale v0.27.1 (both read the same config, both get real
tailscaled nodes); ``normalize`` replaces what legitimately differs between two runs of *any* server
(timestamps, random keys and secrets) by placeholders, and ``diff`` lists every remaining difference as
``capture:path``. Known, reasoned differences live in KNOWN_DIFFERENCES.md beside this file.
"""

from __future__ import annotations

import json
import re
import sqlite3
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.interop.harness import PyscaleServer, wait_until
from tests.peers.tailnet import Tailscaled

KNOWN_DIFFERENCES_MD = Path(__file__).with_name("KNOWN_DIFFERENCES.md")
# Field names whose values are instants: only their presence (null or not) is compared.
TIME_FIELDS = {
    "created_at",
    "createdAt",
    "updated_at",
    "updatedAt",
    "deleted_at",
    "expiration",
    "expiry",
    "last_seen",
    "lastSeen",
}
# Field names whose values are random per run (API key prefixes).
RANDOM_FIELDS = {"prefix"}
KEY_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(mkey|nodekey|discokey):[0-9a-f]{64}$"), r"\1:<hex>"),
    (re.compile(r"^[0-9a-f]{48}$"), "<preauthkey>"),
    (re.compile(r"^[A-Za-z0-9_-]{7}\.[A-Za-z0-9_-]{32}$"), "<apikey>"),
)
# Columns of the database whose values are random or instants.
DB_VOLATILE = {
    "created_at",
    "updated_at",
    "deleted_at",
    "expiry",
    "expiration",
    "last_seen",
    "machine_key",
    "node_key",
    "disco_key",
    "key",
    "hash",
    "prefix",
    "host_info",
    "endpoints",
}

Run = Callable[..., Any]


@dataclass
class Capture:
    """Everything one server answered, by step name."""

    outputs: dict[str, Any] = field(default_factory=dict)

    def add(self, step: str, value: Any) -> Any:
        self.outputs[step] = value
        return value


def cli_json(server: PyscaleServer, *args: str) -> Any:
    res = server.cli(*args, "-o", "json")
    return json.loads(res.stdout)


def run_scenario(server: PyscaleServer, make_node: Callable[..., Tailscaled], prefix: str) -> Capture:
    """Users, pre-auth keys, real registration, rename, expire, delete; returns the JSON outputs."""
    cap = Capture()
    cap.add("users create alice", cli_json(server, "users", "create", "alice"))
    cap.add(
        "users create bob",
        cli_json(server, "users", "create", "bob", "--display-name", "Bob B", "--email", "bob@example.com"),
    )
    cap.add("users list", cli_json(server, "users", "list"))
    key_a = cap.add(
        "preauthkeys create reusable",
        cli_json(server, "preauthkeys", "-u", "1", "create", "--reusable", "-e", "1h"),
    )
    key_b = cap.add(
        "preauthkeys create single", cli_json(server, "preauthkeys", "-u", "2", "create", "-e", "1h")
    )
    nodea, nodeb = make_node(f"{prefix}a"), make_node(f"{prefix}b")
    nodea.up(server.url, key_a["key"])
    nodeb.up(server.url, key_b["key"])
    wait_until("both nodes online", lambda: _all_online(server, 2), timeout=60)
    cap.add("nodes list after up", cli_json(server, "nodes", "list"))
    cap.add("preauthkeys list bob", cli_json(server, "preauthkeys", "-u", "2", "list"))
    cap.add("nodes rename", cli_json(server, "nodes", "rename", "-i", "1", "renamed-a"))
    cap.add("nodes expire", cli_json(server, "nodes", "expire", "-i", "2"))
    cap.add("nodes list after rename+expire", cli_json(server, "nodes", "list"))
    cap.add("preauthkeys expire", cli_json(server, "preauthkeys", "-u", "1", "expire", key_a["key"]))
    cap.add("preauthkeys list alice", cli_json(server, "preauthkeys", "-u", "1", "list"))
    cap.add("nodes delete", cli_json(server, "nodes", "delete", "-i", "2", "--force"))
    cap.add("nodes list after delete", cli_json(server, "nodes", "list"))
    cap.add("nodes list by user", cli_json(server, "nodes", "list", "-u", "alice"))
    cap.add(
        "preauthkeys create ephemeral",
        cli_json(server, "preauthkeys", "-u", "2", "create", "--ephemeral", "--reusable", "-e", "2h"),
    )
    cap.add("preauthkeys list bob final", cli_json(server, "preauthkeys", "-u", "2", "list"))
    cap.add("users rename", cli_json(server, "users", "rename", "-i", "2", "-r", "robert"))
    cap.add(
        "users create carol", cli_json(server, "users", "create", "carol", "--email", "carol@example.com")
    )
    cap.add("users list by name", cli_json(server, "users", "list", "-n", "robert"))
    cap.add("users destroy", cli_json(server, "users", "destroy", "-i", "3", "--force"))
    cap.add("users list final", cli_json(server, "users", "list"))
    return cap


def run_admin_scenario(server: PyscaleServer, make_node: Callable[..., Tailscaled], prefix: str) -> Capture:
    """Subnet routes (advertised by a real node, then approved), forced tags and API keys."""
    cap = Capture()
    server.cli("users", "create", "alice")
    key = cli_json(server, "preauthkeys", "-u", "1", "create", "--reusable", "-e", "1h")["key"]
    node = make_node(f"{prefix}r")
    node.up(server.url, key, "--advertise-routes=10.9.0.0/24")
    wait_until("the router online", lambda: _all_online(server, 1), timeout=60)
    wait_until(
        "the route announced",
        lambda: cli_json(server, "nodes", "list-routes")[0].get("available_routes"),
        timeout=60,
    )
    cap.add("nodes list-routes", cli_json(server, "nodes", "list-routes"))
    cap.add(
        "nodes approve-routes", cli_json(server, "nodes", "approve-routes", "-i", "1", "-r", "10.9.0.0/24")
    )
    cap.add("nodes list-routes approved", cli_json(server, "nodes", "list-routes"))
    cap.add("nodes tag", cli_json(server, "nodes", "tag", "-i", "1", "-t", "tag:test"))
    cap.add("nodes list --tags", cli_json(server, "nodes", "list", "--tags"))
    api_key = cap.add("apikeys create", cli_json(server, "apikeys", "create", "-e", "1h"))
    cap.add("apikeys list", cli_json(server, "apikeys", "list"))
    cap.add("apikeys expire", cli_json(server, "apikeys", "expire", "--prefix", api_key.split(".")[0]))
    cap.add("apikeys list expired", cli_json(server, "apikeys", "list"))
    return cap


def _all_online(server: PyscaleServer, count: int) -> bool:
    nodes = cli_json(server, "nodes", "list")
    return len(nodes) == count and all(n.get("online") for n in nodes)


def rest_get(base_url: str, api_key: str, path: str) -> Any:
    req = urllib.request.Request(base_url + path, headers={"Authorization": f"Bearer {api_key}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=10) as resp:
        return json.loads(resp.read())


def db_rows(db_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows of the tables both servers write, ordered by id, volatile columns masked."""
    out: dict[str, list[dict[str, Any]]] = {}
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        for table in ("users", "pre_auth_keys", "nodes", "api_keys", "policies"):
            rows = con.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()  # noqa: S608 - fixed names
            out[table] = [{k: _mask_db(k, r[k]) for k in r.keys()} for r in rows]  # noqa: SIM118
    finally:
        con.close()
    return out


def _mask_db(column: str, value: Any) -> Any:
    if column in DB_VOLATILE and value is not None:
        return f"<{column}>"
    return value


def normalize(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        if key in TIME_FIELDS or set(value) <= {"seconds", "nanos"} and value:
            return "<time>"
        return {k: normalize(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v, key) for v in value]
    if isinstance(value, str):
        if key in TIME_FIELDS and value:
            return "<time>"
        if key in RANDOM_FIELDS:
            return f"<{key}>"
        for pattern, repl in KEY_PATTERNS:
            if pattern.match(value):
                return pattern.sub(repl, value)
    return value


def diff(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Every leaf where a (pyscale) and b (Headscale) differ, as (path, a, b); a missing key is <absent>."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[tuple[str, Any, Any]] = []
        for k in sorted(set(a) | set(b)):
            out += diff(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += diff(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [(path, a, b)]


def known_patterns() -> list[re.Pattern[str]]:
    """The path patterns listed in KNOWN_DIFFERENCES.md (lines starting with ``- `pattern` ``)."""
    text = KNOWN_DIFFERENCES_MD.read_text()
    return [re.compile(m.group(1)) for m in re.finditer(r"^- `([^`]+)`", text, re.MULTILINE)]


def unexplained(differences: list[tuple[str, Any, Any]]) -> list[tuple[str, Any, Any]]:
    patterns = known_patterns()
    return [d for d in differences if not any(p.fullmatch(d[0]) for p in patterns)]
