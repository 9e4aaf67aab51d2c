"""Differential tests: the same config and operations against pyscale and Headscale v0.27.1.

CLI ``-o json`` outputs, REST responses and database rows must match after ``normalize`` (instants and
random keys), except for the differences listed, with their reason, in KNOWN_DIFFERENCES.md. The scenario
runs once per module against both servers (each with its own real tailscaled nodes); each test compares
one kind of answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pyscale.cli.client import ApiClient
from tests.compat.differential import (
    KNOWN_DIFFERENCES_MD,
    Capture,
    db_rows,
    diff,
    known_patterns,
    normalize,
    rest_get,
    run_scenario,
    unexplained,
)
from tests.peers.tailnet import HeadscaleServer, SharedConfigPyscale, Tailscaled

pytestmark = pytest.mark.interop
REST_PATHS = (
    "/api/v1/user",
    "/api/v1/node",
    "/api/v1/preauthkey?user=1",
    "/api/v1/preauthkey?user=2",
    "/api/v1/apikey",
)


@dataclass
class Answers:
    cli: dict[str, Any]
    rest: dict[str, Any]
    db: dict[str, Any]


def _unify_names(value: Any, prefix: str) -> Any:
    """The two runs share one machine, so their nodes are called pya/pyb and hsa/hsb: unify."""
    text = json.dumps(value).replace(f'"{prefix}a"', '"nodea"').replace(f'"{prefix}b"', '"nodeb"')
    return json.loads(text)


def _collect(
    server: SharedConfigPyscale, api_key: str, prefix: str, root: Path, bins: dict[str, Path]
) -> Answers:
    nodes: list[Tailscaled] = []

    def make_node(name: str, **env: str) -> Tailscaled:
        node = Tailscaled(root, name, bins["tailscaled"], bins["tailscale"], **env)
        nodes.append(node)
        return node.start()

    try:
        cap: Capture = run_scenario(server, make_node, prefix)
        rest = {path: rest_get(server.url, api_key, path) for path in REST_PATHS}
    finally:
        for node in nodes:
            node.stop()
    db = db_rows(server.root / "db.sqlite")
    return Answers(*(_unify_names(normalize(v), prefix) for v in (cap.outputs, rest, db)))


@pytest.fixture(scope="module")
def answers(
    tmp_path_factory: pytest.TempPathFactory, peer_bins: dict[str, Path]
) -> Iterator[tuple[Answers, Answers]]:
    root = tmp_path_factory.mktemp("differential")
    (root / "py").mkdir()
    (root / "hs").mkdir()
    py, hs = SharedConfigPyscale(root / "py"), HeadscaleServer(root / "hs", peer_bins["headscale"])
    try:
        py.start()
        hs.start()
        in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        py_key = ApiClient(str(py.root / "server.sock")).call(
            "POST", "/api/v1/apikey", {"expiration": in_an_hour}
        )["apiKey"]
        hs_key = hs.cli("apikeys", "create", "-e", "1h").stdout.strip().splitlines()[-1]
        yield _collect(py, py_key, "py", root, peer_bins), _collect(hs, hs_key, "hs", root, peer_bins)
    finally:
        py.stop()
        hs.stop()


def _check(kind: str, differences: list[tuple[str, Any, Any]]) -> None:
    left = unexplained(differences)
    lines = [f"{kind}: {len(left)} unexplained difference(s) (pyscale != headscale):"]
    lines += [f"  {p}: {json.dumps(a)} != {json.dumps(b)}" for p, a, b in left]
    assert not left, "\n".join(lines)


def test_cli_json_outputs_match(answers: tuple[Answers, Answers]) -> None:
    py, hs = answers
    assert list(py.cli) == list(hs.cli)
    _check(
        "CLI -o json",
        [(f"cli:{step}{path}", a, b) for step in py.cli for path, a, b in diff(py.cli[step], hs.cli[step])],
    )


def test_rest_responses_match(answers: tuple[Answers, Answers]) -> None:
    py, hs = answers
    _check(
        "REST",
        [
            (f"rest:{url}{path}", a, b)
            for url in REST_PATHS
            for path, a, b in diff(py.rest[url], hs.rest[url])
        ],
    )


def test_database_rows_match(answers: tuple[Answers, Answers]) -> None:
    py, hs = answers
    _check("database rows", [(f"db:{path}", a, b) for path, a, b in diff(py.db, hs.db)])


def test_known_differences_are_documented() -> None:
    """Every pattern has a reason after it: the list is documentation, not a silencer."""
    text = KNOWN_DIFFERENCES_MD.read_text()
    assert known_patterns()
    for block in text.split("\n- `")[1:]:
        reason = block.split("`", 1)[1].split("\n- ")[0].strip()
        assert len(reason) > 20, f"pattern without a reason: {block[:80]}"
