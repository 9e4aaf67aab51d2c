"""Replay real-client TS2021 captures (tests/vectors, see its README for origin) through the
sans-IO handshake and record layers, and cross-check against noiseprotocol."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from pyscale.noise import handshake, records
from pyscale.noise.early import early_payload

VECTORS = sorted((Path(__file__).parent.parent / "vectors").glob("ts2021-*.json"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture(params=VECTORS, ids=[p.stem for p in VECTORS])
def vector(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _load(request.param)


def _respond(vec: dict[str, Any]) -> handshake.HandshakeResult:
    keys = vec["server_keys"]
    conn = vec["connections"][0]
    init = base64.b64decode(conn["upgrade_request"]["x_tailscale_handshake_b64"])
    assert init.hex() == conn["initiation"]["hex"]
    return handshake.respond(
        init, bytes.fromhex(keys["static_private_hex"]), bytes.fromhex(keys["ephemeral_private_hex"])
    )


def test_handshake_matches_capture(vector: dict[str, Any]) -> None:
    conn = vector["connections"][0]
    res = _respond(vector)
    want = conn["handshake_results"]
    assert res.response.hex() == conn["server_first_flight"]["noise_response_hex"]
    assert res.client_machine_key.hex() == want["client_machine_public_hex"]
    assert res.protocol_version == want["protocol_version"]
    assert res.c2s_key.hex() == want["c2s_key_hex"]
    assert res.s2c_key.hex() == want["s2c_key_hex"]
    assert res.handshake_hash.hex() == want["handshake_hash_hex"]


@pytest.mark.parametrize("one_byte", [False, True])
def test_client_records_decrypt(vector: dict[str, Any], one_byte: bool) -> None:
    conn = vector["connections"][0]
    dec = records.RecordDecoder(bytes.fromhex(conn["handshake_results"]["c2s_key_hex"]))
    stream = b"".join(bytes.fromhex(r["record_hex"]) for r in conn["c2s_records"])
    chunks = [stream[i:i + 1] for i in range(len(stream))] if one_byte else [stream]
    got = b"".join(b"".join(dec.receive_data(c)) for c in chunks)
    assert got == b"".join(bytes.fromhex(r["plaintext_hex"]) for r in conn["c2s_records"])


def test_server_records_reencrypt(vector: dict[str, Any]) -> None:
    conn = vector["connections"][0]
    enc = records.RecordEncoder(bytes.fromhex(conn["handshake_results"]["s2c_key_hex"]))
    for rec in conn["s2c_records"]:
        assert enc.encrypt(bytes.fromhex(rec["plaintext_hex"])).hex() == rec["record_hex"]


def test_early_payload_bytes(vector: dict[str, Any]) -> None:
    flight = vector["connections"][0]["server_first_flight"]
    if not flight.get("early_noise_sent"):
        pytest.skip("capture made without early noise")
    chal = bytes.fromhex(vector["server_keys"]["early_noise_challenge_public_hex"])
    assert early_payload(chal).hex() == flight["early_noise_plaintext_hex"]


def test_against_noiseprotocol(vector: dict[str, Any]) -> None:
    """An independent Noise implementation, as responder, derives the same keys."""
    from noise.connection import Keypair, NoiseConnection

    keys = vector["server_keys"]
    conn = vector["connections"][0]
    init = bytes.fromhex(conn["initiation"]["hex"])
    nc = NoiseConnection.from_name(b"Noise_IK_25519_ChaChaPoly_BLAKE2s")
    nc.set_as_responder()
    nc.set_prologue(b"Tailscale Control Protocol v%d" % handshake.parse_version(init))
    nc.set_keypair_from_private_bytes(Keypair.STATIC, bytes.fromhex(keys["static_private_hex"]))
    nc.set_keypair_from_private_bytes(Keypair.EPHEMERAL, bytes.fromhex(keys["ephemeral_private_hex"]))
    nc.start_handshake()
    nc.read_message(init[5:])
    theirs = nc.write_message()
    ours = _respond(vector)
    assert ours.response[3:] == theirs
    assert nc.get_handshake_hash() == ours.handshake_hash


@pytest.mark.parametrize(
    ("mutate", "text"),
    [
        (lambda b: b[:-1], "wrong handshake initiation size"),
        (lambda b: b[:2] + b"\x09" + b[3:], "unexpected handshake message type"),
        (lambda b: b[:3] + b"\x00\x61" + b[5:], "wrong handshake initiation length"),
        (lambda b: b[:50] + bytes([b[50] ^ 1]) + b[51:], "authentication failed"),
    ],
)
def test_bad_initiations_raise(mutate: Any, text: str) -> None:
    vec = _load(VECTORS[0])
    init = bytes.fromhex(vec["connections"][0]["initiation"]["hex"])
    with pytest.raises(handshake.HandshakeError, match=text):
        handshake.respond(mutate(init), bytes(range(32)), bytes(range(1, 33)))


def test_record_errors() -> None:
    dec = records.RecordDecoder(bytes(32))
    with pytest.raises(records.RecordError, match="too large"):
        dec.receive_data(b"\x04\xff\xff")
    with pytest.raises(records.RecordError, match="type"):
        records.RecordDecoder(bytes(32)).receive_data(b"\x05\x00\x10")
    with pytest.raises(records.RecordError, match="authentication"):
        records.RecordDecoder(bytes(32)).receive_data(b"\x04\x00\x11" + bytes(17))


def test_large_plaintext_is_split() -> None:
    enc, dec = records.RecordEncoder(bytes(32)), records.RecordDecoder(bytes(32))
    data = bytes(range(256)) * 40
    wire = enc.encrypt(data)
    assert b"".join(dec.receive_data(wire)) == data
    assert len(wire) == len(data) + 3 * 19  # three records
