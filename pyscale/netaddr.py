"""``host:port`` listen addresses as the config holds them (``0.0.0.0:8080``, ``[::]:443``, ``:50443``)."""

from __future__ import annotations


def split_host_port(addr: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """(host, port) to bind; an empty host means ``default_host``."""
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or default_host, int(port or 0)


def probe_host_port(addr: str) -> tuple[str, int]:
    """(host, port) to connect to a listener bound at ``addr``: wildcards become the loopback address."""
    host, port = split_host_port(addr, "")
    return ("127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host), port
