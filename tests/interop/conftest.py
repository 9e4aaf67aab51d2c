from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.harness import CaddyNode, PyscaleServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PyscaleServer]:
    srv = PyscaleServer(tmp_path).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def make_node(tmp_path: Path, server: PyscaleServer) -> Iterator[object]:
    nodes: list[CaddyNode] = []

    def factory(name: str) -> CaddyNode:
        node = CaddyNode(tmp_path, server, name)
        nodes.append(node)
        return node

    try:
        yield factory
    finally:
        for node in nodes:
            node.stop()
