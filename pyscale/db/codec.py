"""Value encodings exactly as Headscale v0.27.1 stores them in SQLite (gorm 1.31 + modernc sqlite).

Timestamps are Go ``time.Time`` text, ``2025-06-22 07:21:58.271483603+02:00``: trailing zeros
of the fraction are trimmed (Go's ``.999999999`` layout), the offset is always ``±HH:MM``, and
the zero time is ``0001-01-01 00:00:00+00:00``. Python keeps microseconds, so reading a
nanosecond value truncates it (never rounds across a second). Keys are the Tailscale text forms,
lists and Hostinfo are compact JSON, booleans 0/1. Empty lists are written as ``[]`` (Headscale
writes ``[]`` or NULL; both read back as an empty slice); a nil Hostinfo is NULL.
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from pyscale.db.errors import DecodeError
from pyscale.keys import KeyError_, _Key

_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2}(?::?\d{2})?)?$"
)

K = TypeVar("K", bound=_Key)


# --- timestamps -------------------------------------------------------------------------------


def encode_time(t: datetime | None) -> str | None:
    if t is None:
        return None
    off = t.utcoffset()
    if off is None:
        raise ValueError(f"naive datetime {t!r}: the database stores zone offsets, pass an aware time")
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if t.microsecond:
        text += "." + f"{t.microsecond:06d}".rstrip("0")
    return text + _format_offset(off)


def _format_offset(off: timedelta) -> str:
    # Go's "-07:00" layout: minutes only; seconds of an odd historical offset are dropped like Go does.
    total = int(off.total_seconds())
    sign = "-" if total < 0 else "+"
    total = abs(total) // 60
    return f"{sign}{total // 60:02d}:{total % 60:02d}"


def decode_time(value: Any) -> datetime | None:
    """Parse every form go-sqlite3 accepts for a datetime column; ``None`` for NULL."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, int | float):
        # go-sqlite3 reads numbers in datetime columns as Unix seconds.
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str):
        raise DecodeError(f"timestamp of type {type(value).__name__}: {value!r}")
    try:
        # Fast path: since 3.11 fromisoformat reads Go's layout, truncating digits beyond 6.
        t = datetime.fromisoformat(value)
        return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
    except ValueError:
        pass
    m = _TIME_RE.match(value.strip())
    if m is None:
        raise DecodeError(f"unparseable timestamp {value!r}")
    year, month, day, hh, mm, ss, frac, zone = m.groups()
    micro = int((frac or "0").ljust(9, "0")[:6])
    try:
        return datetime(
            int(year), int(month), int(day), int(hh or 0), int(mm or 0), int(ss or 0), micro,
            tzinfo=_parse_zone(zone),
        )
    except ValueError as exc:
        raise DecodeError(f"invalid timestamp {value!r}: {exc}") from exc


def _parse_zone(zone: str | None) -> timezone:
    if zone is None or zone == "Z":
        return UTC  # go-sqlite3 treats a zone-less text as UTC
    digits = zone[1:].replace(":", "")
    seconds = int(digits[0:2]) * 3600 + int(digits[2:4]) * 60 + int(digits[4:6] or 0)
    if seconds == 0:
        return UTC
    return timezone(timedelta(seconds=-seconds if zone[0] == "-" else seconds))


# --- booleans, text ---------------------------------------------------------------------------


def encode_bool(b: bool) -> int:
    return 1 if b else 0


def decode_bool(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, int | float):
        return value != 0
    text = value.decode() if isinstance(value, bytes) else str(value)
    text = text.strip().lower()
    if text in ("1", "true", "t"):
        return True
    if text in ("0", "false", "f", ""):
        return False
    raise DecodeError(f"unparseable boolean {value!r}")


def decode_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def decode_optional_text(value: Any) -> str | None:
    return None if value is None else decode_text(value)


# --- keys -------------------------------------------------------------------------------------


def encode_key(k: _Key | None, cls: type[_Key]) -> str:
    # Headscale's key fields are values, never nil: an absent key is written as the zero key.
    return str(k if k is not None else cls.zero())


def decode_key(value: Any, cls: type[K]) -> K:
    text = decode_text(value).strip()
    if not text:
        return cls.zero()
    try:
        if ":" not in text:
            return cls(bytes.fromhex(text))  # pre-prefix databases stored bare hex
        return cls.parse(text)
    except (KeyError_, ValueError) as exc:
        raise DecodeError(f"bad {cls.PREFIX} key {text[:24]!r}: {exc}") from exc


def decode_optional_key(value: Any, cls: type[K]) -> K | None:
    key = decode_key(value, cls)
    return None if key.is_zero() else key


# --- addresses --------------------------------------------------------------------------------


def encode_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> str | None:
    return None if ip is None else str(ip)


def decode_ipv4(value: Any) -> ipaddress.IPv4Address | None:
    text = decode_text(value).strip()
    if not text:
        return None
    try:
        return ipaddress.IPv4Address(text)
    except ValueError as exc:
        raise DecodeError(f"bad ipv4 {text!r}") from exc


def decode_ipv6(value: Any) -> ipaddress.IPv6Address | None:
    text = decode_text(value).strip()
    if not text:
        return None
    try:
        return ipaddress.IPv6Address(text)
    except ValueError as exc:
        raise DecodeError(f"bad ipv6 {text!r}") from exc


# --- JSON -------------------------------------------------------------------------------------


def encode_json(value: Any) -> str:
    # Go's encoding/json output is compact and keeps non-ASCII as UTF-8.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def decode_json(value: Any) -> Any:
    text = decode_text(value).strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DecodeError(f"bad JSON {text[:40]!r}") from exc


def encode_str_list(items: list[str]) -> str:
    return encode_json(list(items))


def decode_str_list(value: Any) -> list[str]:
    data = decode_json(value)
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        raise DecodeError(f"expected a JSON array of strings, got {decode_text(value)[:40]!r}")
    return data


def encode_hostinfo(hostinfo: dict[str, Any] | None) -> str | None:
    # gorm (>= 1.25) stores a JSON "null" as SQL NULL: that is what a nil *tailcfg.Hostinfo becomes.
    return None if hostinfo is None else encode_json(hostinfo)


def decode_hostinfo(value: Any) -> dict[str, Any] | None:
    data = decode_json(value)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise DecodeError(f"host_info is not a JSON object: {decode_text(value)[:40]!r}")
    return data


def decode_blob(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    return bytes(value)
