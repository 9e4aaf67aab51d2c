"""The register/map bodies real clients sent (tests/vectors) parse into our wire types, and the
map frames in the captures decode with our framing rules (u32 LE length + zstd JSON)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
import zstandard

from pyscale.tailcfg.messages import MapRequest, RegisterRequest, preferred_derp

VECTORS = sorted((Path(__file__).parent.parent / "vectors").glob("ts2021-*.json"))


def requests(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    reqs: list[dict[str, Any]] = data["connections"][0]["h2_requests"]
    return reqs


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_captured_bodies_parse(path: Path) -> None:
    kinds = set()
    for req in requests(path):
        body = json.loads(req["body_text"])
        if req["path"] == "/machine/register":
            reg = RegisterRequest.from_json(body)
            assert reg.version >= 130 and not reg.node_key.is_zero()
            assert reg.hostinfo.get("Hostname")
            if req["kind"] == "logout":
                assert reg.expiry is not None and reg.expiry.year == 1970
            kinds.add(req["kind"])
        elif req["path"] == "/machine/map":
            m = MapRequest.from_json(body)
            assert m.compress == "zstd" and m.keep_alive and m.disco_key is not None
            assert m.stream == (req["kind"] == "stream")
            assert m.is_lite_update == (req["kind"] == "lite-update")
            if m.hostinfo and "NetInfo" in m.hostinfo:
                assert preferred_derp(m.hostinfo) > 0
            kinds.add(req["kind"])
    assert {"stream"} <= kinds


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_captured_map_frames_decode(path: Path) -> None:
    frames = [f for r in requests(path) for f in (r["response"].get("frames") or [])]
    assert frames
    for f in frames:
        raw = bytes.fromhex(f["frame_hex"])
        (length,) = struct.unpack("<I", raw[:4])
        assert length == len(raw) - 4
        decoded = json.loads(zstandard.ZstdDecompressor().decompressobj().decompress(raw[4:]))
        assert decoded == f["json"]
