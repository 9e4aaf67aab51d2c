import pytest

from pyscale.keys import KeyError_, MachinePublic, NodePublic, PrivateKey


def test_roundtrip_and_prefix() -> None:
    k = NodePublic(bytes(range(32)))
    assert str(k).startswith("nodekey:")
    assert NodePublic.parse(str(k)) == k
    assert NodePublic.parse(str(k).upper().replace("NODEKEY", "nodekey")) == k


@pytest.mark.parametrize("text", ["mkey:" + "00" * 32, "nodekey:abc", "nodekey:" + "zz" * 32, ""])
def test_bad_keys_rejected(text: str) -> None:
    with pytest.raises(KeyError_):
        NodePublic.parse(text)


def test_private_key_public_and_redaction() -> None:
    priv = PrivateKey(bytes.fromhex("7222ac72255ae44a6b938fda2b1fca1e1b00dfef38ada41ea21900d13863b0d7"))
    assert priv.public_raw().hex() == "63841300aa951dac7dc8d6331a805fcd236303eb721d4a1b61e8a945e5d55355"
    assert "7222" not in repr(priv)
    assert MachinePublic.zero().is_zero()
