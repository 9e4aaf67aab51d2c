"""Hostname and given-name rules of Headscale v0.27.1 (hscontrol/util/dns.go, db/node.go)."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Container

_VALID_HOSTNAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,61}[a-z0-9]$")
_INVALID_LABEL_CHARS = re.compile(r"[^a-z0-9-]")
_DNS_SAFE = string.ascii_lowercase + string.digits
LABEL_MAX = 63
SUFFIX_LEN = 8


def random_suffix(n: int = SUFFIX_LEN) -> str:
    return "".join(secrets.choice(_DNS_SAFE) for _ in range(n))


def sanitize_hostname(raw: str | None, machine_key_text: str) -> str:
    """The stored ``hostname``: lower-cased if valid, else ``invalid-<random>``."""
    if not raw:
        return "node-" + machine_key_text[:8]
    lowered = raw.lower()
    if _VALID_HOSTNAME.match(lowered):
        return lowered
    return "invalid-" + random_suffix()


def to_given_name(hostname: str) -> str:
    """A DNS label from a hostname: invalid characters dropped, at most 63 characters."""
    label = _INVALID_LABEL_CHARS.sub("", hostname.lower())
    label = label.strip("-")[:LABEL_MAX].strip("-")
    return label or "node"


def unique_given_name(hostname: str, taken: Container[str]) -> str:
    base = to_given_name(hostname)
    if base not in taken:
        return base
    while True:
        candidate = f"{base[:LABEL_MAX - SUFFIX_LEN - 1]}-{random_suffix()}"
        if candidate not in taken:
            return candidate


def validate_given_name(name: str) -> str | None:
    """None if ``name`` is an acceptable node name (rename), else the reason."""
    if not 2 <= len(name) <= LABEL_MAX:
        return "name must be 2-63 characters"
    if name != name.lower():
        return "name must be lowercase"
    if _INVALID_LABEL_CHARS.search(name) or name.startswith("-") or name.endswith("-"):
        return "name must be a DNS label: a-z, 0-9 and '-' (not first or last)"
    return None
