"""Go ``time.Time`` JSON text: RFC 3339 with 0-9 fraction digits; the zero time is year 1."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

ZERO = datetime(1, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|z|[+-]\d\d:\d\d)$"
)


class TimeFormatError(ValueError):
    pass


def format_time(t: datetime | None) -> str:
    """Go's MarshalJSON form; microsecond precision is all Python holds."""
    if t is None or (t.year == 1 and t.month == 1 and t.day == 1):
        return "0001-01-01T00:00:00Z"
    t = t.astimezone(UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += ("." + f"{t.microsecond:06d}").rstrip("0")
    return text + "Z"


def parse_time(text: str) -> datetime:
    m = _RFC3339.match(text)
    if not m:
        raise TimeFormatError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, sec = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0").ljust(9, "0")[:6])
    zone = m.group(8)
    if zone in ("Z", "z"):
        tz: timezone = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return datetime(year, month, day, hour, minute, sec, micro, tzinfo=tz)
