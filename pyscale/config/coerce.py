"""Raw YAML/env values -> typed values, one function per kind (see model.py), with viper's leniency.

viper reads a key with GetString/GetBool/GetDuration/GetStringSlice, which convert between scalar types
(an int read as a string, "true" read as a bool, a string read as a list splits on whitespace). Each coercer
here does the same, and raises ``CoerceError`` with a human message when the value cannot be used. ``None``
(a key written with no value) is the kind's zero value, as in viper.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyscale.config.report import Setting

CGNAT_V4 = ipaddress.IPv4Network("100.64.0.0/10")
TAILSCALE_ULA_V6 = ipaddress.IPv6Network("fd7a:115c:a1e0::/48")
# Headscale's fallback when unix_socket_permission does not parse as octal (its default "0o770" never does).
DEFAULT_SOCKET_MODE = 0o700

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_PROM_UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_PROM_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_TRUE = {"1", "t", "true", "yes", "y", "on"}
_FALSE = {"0", "f", "false", "no", "n", "off", ""}


class CoerceError(ValueError):
    pass


@dataclass(frozen=True)
class Ctx:
    """What a coercer may need besides the value: the config file's directory and a warning sink."""

    config_dir: str | None
    warn: Callable[[str], None]


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration ("1h30m", "1.5s", "300ms", "-2m") -> seconds."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    if not s:
        raise CoerceError(f"invalid duration {text!r}")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _GO_PART.match(s, pos)
        if not m:
            if s.replace(".", "", 1).isdigit():
                raise CoerceError(f"invalid duration {text!r}: missing unit (e.g. {s}s, {s}m, {s}h)")
            raise CoerceError(f"invalid duration {text!r} (Go syntax: 300ms, 120s, 30m, 3h, 1h30m)")
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def parse_prom_duration(text: str) -> float:
    """Prometheus model.ParseDuration ("180d", "1w2d", "90m") -> seconds."""
    s = text.strip()
    if s == "0":
        return 0.0
    m = _PROM_RE.match(s)
    if not s or not m:
        raise CoerceError(f"invalid duration {text!r} (Prometheus syntax: 180d, 1w, 12h, 90m)")
    units = ("y", "w", "d", "h", "m", "s", "ms")
    return float(sum(int(g) * _PROM_UNITS[u] for g, u in zip(m.groups(), units, strict=True) if g))


def _scalar_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, int, float)):
        return str(v)
    raise CoerceError(f"expected a single value, got {type(v).__name__}")


def c_str(s: Setting, ctx: Ctx) -> str:
    if s.value is None:
        return ""
    if s.text is not None and not isinstance(s.value, str):
        # PyYAML resolves YAML 1.1 types (no -> False, 0123 -> 83, dates); a string key wants the text.
        return s.text
    return _scalar_str(s.value)


def c_bool(s: Setting, ctx: Ctx) -> bool:
    v = s.value
    if v is None or isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return v != 0
    t = _scalar_str(v).strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise CoerceError(f"expected true or false, got {v!r}")


def c_int(s: Setting, ctx: Ctx) -> int:
    v = s.value
    if v is None:
        return 0
    if isinstance(v, bool):
        raise CoerceError(f"expected a whole number, got {v!r}")
    if isinstance(v, float) and v.is_integer():
        return int(v)
    try:
        return int(_scalar_str(v).strip())
    except ValueError:
        raise CoerceError(f"expected a whole number, got {v!r}") from None


def c_duration(s: Setting, ctx: Ctx) -> float:
    v = s.value
    if v is None or (not isinstance(v, bool) and isinstance(v, (int, float)) and v == 0):
        return 0.0
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        # viper would read a bare number as nanoseconds; that is never what a user means.
        raise CoerceError(f"invalid duration {v!r}: missing unit (e.g. {v}s, {v}m, {v}h)")
    return parse_go_duration(_scalar_str(v))


def c_promduration(s: Setting, ctx: Ctx) -> float:
    text = "" if s.value is None else _scalar_str(s.value).strip()
    if text == "0":
        return math.inf  # Headscale: "0" means never expire
    try:
        return parse_prom_duration(text)
    except CoerceError as e:
        ctx.warn(f"{e}; using 180d as Headscale does")
        return 180 * 86400.0


def c_strlist(s: Setting, ctx: Ctx) -> tuple[str, ...]:
    v = s.value
    if v is None:
        return ()
    if isinstance(v, list):
        return tuple(_scalar_str(x) for x in v if x is not None)
    return tuple(_scalar_str(v).split())  # viper: a string read as a list splits on whitespace


def c_splitmap(s: Setting, ctx: Ctx) -> dict[str, tuple[str, ...]]:
    v = s.value
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise CoerceError("expected a mapping of domain -> list of nameservers")
    out: dict[str, tuple[str, ...]] = {}
    for domain, servers in v.items():
        out[str(domain)] = c_strlist(Setting(servers, s.where), ctx)
    return out


def c_strmap(s: Setting, ctx: Ctx) -> dict[str, str]:
    v = s.value
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise CoerceError("expected a mapping of key -> value")
    return {str(k): c_str(Setting(x, s.where), ctx) for k, x in v.items()}


def c_records(s: Setting, ctx: Ctx) -> tuple[dict[str, str], ...]:
    v = s.value
    if v is None:
        return ()
    if not isinstance(v, list):
        raise CoerceError("expected a list of {name, type, value} records")
    out = []
    for i, rec in enumerate(v):
        if not isinstance(rec, dict):
            raise CoerceError(f"record {i}: expected a mapping with name, type and value")
        fields = {str(k).lower(): x for k, x in rec.items()}
        missing = [k for k in ("name", "type", "value") if not fields.get(k)]
        if missing:
            raise CoerceError(f"record {i}: missing {', '.join(missing)}")
        out.append({k: _scalar_str(fields[k]) for k in ("name", "type", "value")})
    return tuple(out)


def c_filemode(s: Setting, ctx: Ctx) -> int:
    """Octal mode. The YAML source text is used when available so that 0770, "0770", 770 and "0o770"
    all mean 0o770 (Headscale falls back to 0o700 for "0o770", its own default)."""
    if s.value is None:
        return DEFAULT_SOCKET_MODE
    text = (s.text if s.text is not None else _scalar_str(s.value)).strip()
    digits = text[2:] if text[:2].lower() == "0o" else text
    try:
        mode = int(digits, 8)
    except ValueError:
        ctx.warn(f"{text!r} is not an octal file mode; using 0700 as Headscale does")
        return DEFAULT_SOCKET_MODE
    if not 0 <= mode <= 0o7777:
        raise CoerceError(f"file mode {text!r} out of range")
    return mode


def c_path(s: Setting, ctx: Ctx) -> str:
    p = c_str(s, ctx)
    if p and not os.path.isabs(p) and ctx.config_dir:
        p = os.path.normpath(os.path.join(ctx.config_dir, p))  # as Go filepath.Join: relative to the file
    return p


def _prefix(s: Setting, ctx: Ctx, family: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    text = c_str(s, ctx).strip()
    if not text:
        return None
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise CoerceError(f"invalid IP prefix {text!r}: {e}") from None
    if net.version != family:
        raise CoerceError(f"{text!r} is not an IPv{family} prefix")
    if str(net) != text:
        ctx.warn(f"prefix {text!r} has host bits set; using {net}")
    wanted = CGNAT_V4 if family == 4 else TAILSCALE_ULA_V6
    if not net.subnet_of(wanted):  # type: ignore[arg-type]
        ctx.warn(f"Prefix {text} is not in the {wanted} range. This is an unsupported configuration.")
    return net


def c_prefix4(s: Setting, ctx: Ctx) -> ipaddress.IPv4Network | None:
    return _prefix(s, ctx, 4)  # type: ignore[return-value]


def c_prefix6(s: Setting, ctx: Ctx) -> ipaddress.IPv6Network | None:
    return _prefix(s, ctx, 6)  # type: ignore[return-value]


COERCERS: dict[str, Callable[[Setting, Ctx], Any]] = {
    "str": c_str,
    "bool": c_bool,
    "int": c_int,
    "duration": c_duration,
    "promduration": c_promduration,
    "strlist": c_strlist,
    "splitmap": c_splitmap,
    "strmap": c_strmap,
    "records": c_records,
    "filemode": c_filemode,
    "path": c_path,
    "prefix4": c_prefix4,
    "prefix6": c_prefix6,
}
