"""Value encodings against the exact text Headscale writes (facts §5.2 and the sqlite dumps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pyscale.db import codec
from pyscale.db.errors import DecodeError
from pyscale.keys import DiscoPublic, MachinePublic, NodePublic
from pyscale.state.model import ZERO_TIME


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0001-01-01 00:00:00+00:00", ZERO_TIME),
        ("2025-06-22 07:21:58.271483603+02:00",
         datetime(2025, 6, 22, 7, 21, 58, 271483, tzinfo=timezone(timedelta(hours=2)))),
        ("2024-09-27 14:26:16.86266134+00:00", datetime(2024, 9, 27, 14, 26, 16, 862661, tzinfo=UTC)),
        ("2023-03-14 19:47:00+00:00", datetime(2023, 3, 14, 19, 47, tzinfo=UTC)),
        ("2022-12-25 21:35:28.644697962+01:00",
         datetime(2022, 12, 25, 21, 35, 28, 644697, tzinfo=timezone(timedelta(hours=1)))),
        ("2021-01-02 03:04:05.1-05:30",
         datetime(2021, 1, 2, 3, 4, 5, 100000, tzinfo=timezone(-timedelta(hours=5, minutes=30)))),
        ("2021-01-02 03:04:05.123456789+05:45",
         datetime(2021, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=5, minutes=45)))),
        ("2021-01-02T03:04:05Z", datetime(2021, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2021-01-02 03:04:05", datetime(2021, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2021-01-02", datetime(2021, 1, 2, tzinfo=UTC)),
    ],
)
def test_decode_time(text: str, expected: datetime) -> None:
    got = codec.decode_time(text)
    assert got == expected
    assert got is not None and got.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (ZERO_TIME, "0001-01-01 00:00:00+00:00"),
        (datetime(2025, 6, 22, 7, 21, 58, 271483, tzinfo=UTC), "2025-06-22 07:21:58.271483+00:00"),
        (datetime(2025, 6, 22, 7, 21, 58, 270000, tzinfo=UTC), "2025-06-22 07:21:58.27+00:00"),
        (datetime(2025, 6, 22, 7, 21, 58, tzinfo=timezone(timedelta(hours=2))), "2025-06-22 07:21:58+02:00"),
        (datetime(2025, 1, 1, tzinfo=timezone(-timedelta(hours=9, minutes=30))), "2025-01-01 00:00:00-09:30"),
        (None, None),
    ],
)
def test_encode_time(value: datetime | None, text: str | None) -> None:
    assert codec.encode_time(value) == text
    assert codec.decode_time(text) == value


def test_naive_time_refused() -> None:
    with pytest.raises(ValueError):
        codec.encode_time(datetime(2025, 1, 1))


@pytest.mark.parametrize("bad", ["yesterday", "2025-13-01 00:00:00+00:00", "2025-01-01 25:00:00"])
def test_bad_time(bad: str) -> None:
    with pytest.raises(DecodeError):
        codec.decode_time(bad)


def test_bool_forms() -> None:
    assert codec.encode_bool(True) == 1 and codec.encode_bool(False) == 0
    for truthy in (1, "1", "true", b"1", "TRUE"):
        assert codec.decode_bool(truthy) is True
    for falsy in (0, "0", "false", None, ""):
        assert codec.decode_bool(falsy) is False
    with pytest.raises(DecodeError):
        codec.decode_bool("maybe")


def test_keys() -> None:
    raw = bytes(range(32))
    assert codec.encode_key(MachinePublic(raw), MachinePublic) == "mkey:" + raw.hex()
    assert codec.decode_key("nodekey:" + raw.hex(), NodePublic) == NodePublic(raw)
    assert codec.decode_key(raw.hex(), NodePublic) == NodePublic(raw)  # pre-prefix era
    assert codec.encode_key(None, DiscoPublic) == "discokey:" + "00" * 32
    assert codec.decode_optional_key("discokey:" + "00" * 32, DiscoPublic) is None
    assert codec.decode_optional_key(None, DiscoPublic) is None
    with pytest.raises(DecodeError):
        codec.decode_key("mkey:" + raw.hex(), NodePublic)


def test_lists_and_json() -> None:
    assert codec.encode_str_list([]) == "[]"
    endpoints = ["1.2.3.4:41641", "[2001:db8::1]:41641"]
    assert codec.encode_str_list(endpoints) == '["1.2.3.4:41641","[2001:db8::1]:41641"]'
    for empty in (None, "", "null", "[]"):
        assert codec.decode_str_list(empty) == []
    with pytest.raises(DecodeError):
        codec.decode_str_list('{"a":1}')
    assert codec.encode_hostinfo(None) is None
    assert codec.decode_hostinfo("null") is None and codec.decode_hostinfo(None) is None
    hi = {"Hostname": "hé", "RoutableIPs": ["10.0.0.0/24"], "NetInfo": {"PreferredDERP": 1}}
    want = '{"Hostname":"hé","RoutableIPs":["10.0.0.0/24"],"NetInfo":{"PreferredDERP":1}}'
    assert codec.encode_hostinfo(hi) == want
    assert codec.decode_hostinfo(codec.encode_hostinfo(hi)) == hi


def test_ips() -> None:
    assert codec.decode_ipv4("100.64.0.1") is not None
    assert codec.decode_ipv4(None) is None and codec.decode_ipv4("") is None
    assert str(codec.decode_ipv6("fd7a:115c:a1e0::1")) == "fd7a:115c:a1e0::1"
    with pytest.raises(DecodeError):
        codec.decode_ipv4("fd7a::1")
