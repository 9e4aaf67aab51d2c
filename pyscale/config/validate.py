"""Cross-key checks on a built Config, as Headscale v0.27.1's validateServerConfig and LoadServerConfig do
(same messages where Headscale has one), plus the checks Headscale only fails on later at runtime.

Every check reports instead of raising, so one run lists all problems. Locations come from the settings:
the line of the key concerned, else the config file, else "<defaults>".
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from pyscale.config.model import Config
from pyscale.config.report import Problem, Setting, Where

MIN_EPHEMERAL_TIMEOUT = 65.0  # seconds: keepalive (60 s) plus a margin, as Headscale
LOG_LEVELS = ("panic", "fatal", "error", "warn", "info", "debug", "trace")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)

ERR_SERVER_URL_SUFFIX = (
    "server_url cannot be part of base_domain in a way that could make the DERP and headscale server "
    "unreachable"
)
ERR_SERVER_URL_SAME = (
    "server_url cannot use the same domain as base_domain in a way that could make the DERP and headscale "
    "server unreachable"
)


class _Checker:
    def __init__(self, cfg: Config, settings: Mapping[str, Setting], sections: Mapping[str, Where]) -> None:
        self.cfg = cfg
        self.settings = settings
        self.sections = sections
        self.problems: list[Problem] = []

    def where(self, key: str) -> Where:
        """The key's line; for a key not in the file, the line of its nearest section, else the file."""
        s = self.settings.get(key)
        if s is not None:
            return s.where
        parts = key.split(".")
        for n in range(len(parts) - 1, 0, -1):
            section = self.sections.get(".".join(parts[:n]))
            if section is not None:
                return section
        return Where(self.cfg.source_path)

    def error(self, key: str, msg: str, at: str | None = None) -> None:
        self.problems.append(Problem("error", key, msg, self.where(at or key)))

    def warn(self, key: str, msg: str, at: str | None = None) -> None:
        self.problems.append(Problem("warning", key, msg, self.where(at or key)))


def validate(
    cfg: Config, settings: Mapping[str, Setting], sections: Mapping[str, Where] | None = None
) -> list[Problem]:
    c = _Checker(cfg, settings, sections or {})
    checks: list[Callable[[_Checker], None]] = [
        _server,
        _listeners,
        _tls,
        _prefixes,
        _database,
        _dns,
        _derp,
        _misc,
        _oidc,
    ]
    for check in checks:
        check(c)
    return c.problems


def is_safe_server_url(server_url: str, base_domain: str) -> str | None:
    """Headscale's isSafeServerURL: the server's host must not be base_domain or inside it, or clients would
    resolve the control server through MagicDNS. (Headscale compares the host *with* its port; pyscale
    compares the hostname, so "server.example.com:443" with base_domain example.com is refused too.)"""
    host = (urlsplit(server_url).hostname or "").lower().rstrip(".")
    base = base_domain.lower().rstrip(".")
    if not host or not base:
        return None
    if host == base:
        return ERR_SERVER_URL_SAME
    if host.endswith("." + base):
        return ERR_SERVER_URL_SUFFIX
    return None


def _server(c: _Checker) -> None:
    url = c.cfg.server_url
    if not (url.startswith("http://") or url.startswith("https://")):
        c.error("server_url", "server_url must start with https:// or http://")
    else:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as e:
            c.error("server_url", f"server_url {url!r} is not a valid URL: {e}")
            return
        if not parts.hostname:
            c.error("server_url", f"server_url {url!r} has no host name")
    if not c.cfg.noise.private_key_path:
        c.error(
            "noise.private_key_path",
            "headscale now requires a new `noise.private_key_path` field in the config file for the "
            "Tailscale v2 protocol",
        )


def _check_addr(c: _Checker, key: str, addr: str) -> None:
    err = addr_error(addr)
    if err:
        c.error(key, f"{key}: {err}")


def addr_error(addr: str) -> str | None:
    """Why ``addr`` is not a Go-style "host:port" listen address (None when it is fine)."""
    host, sep, port = addr.rpartition(":")
    if not sep:
        return f"{addr!r} is not host:port (e.g. 127.0.0.1:8080 or :8080)"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{addr!r}: bad IPv6 address {host!r}"
    elif ":" in host:
        return f"{addr!r}: put an IPv6 address in brackets, e.g. [::1]:8080"
    if port.isdigit():
        return None if int(port) <= 65535 else f"{addr!r}: port out of range"
    try:
        socket.getservbyname(port)
    except OSError:
        return f"{addr!r}: unknown port {port!r}"
    return None


def _listeners(c: _Checker) -> None:
    cfg = c.cfg
    if not cfg.listen_addr:
        c.warn("listen_addr", "listen_addr is empty: the main listener gets a random port")
    else:
        _check_addr(c, "listen_addr", cfg.listen_addr)
    if cfg.metrics_listen_addr:
        _check_addr(c, "metrics_listen_addr", cfg.metrics_listen_addr)
    if cfg.grpc_listen_addr:
        _check_addr(c, "grpc_listen_addr", cfg.grpc_listen_addr)
    if not cfg.unix_socket:
        c.error("unix_socket", "unix_socket must be set (the CLI reaches the server through it)")


def _tls(c: _Checker) -> None:
    cfg = c.cfg
    if cfg.tls_letsencrypt_hostname and (cfg.tls_cert_path or cfg.tls_key_path):
        c.error(
            "tls_letsencrypt_hostname",
            "set either tls_letsencrypt_hostname or tls_cert_path/tls_key_path, not both",
        )
    if bool(cfg.tls_cert_path) != bool(cfg.tls_key_path):
        c.error("tls_cert_path", "tls_cert_path and tls_key_path must be set together")
    challenge = cfg.tls_letsencrypt_challenge_type
    if challenge not in ("HTTP-01", "TLS-ALPN-01"):
        c.error(
            "tls_letsencrypt_challenge_type",
            "the only supported values for tls_letsencrypt_challenge_type are HTTP-01 and TLS-ALPN-01",
        )
    if cfg.tls_letsencrypt_hostname and challenge == "TLS-ALPN-01" and not cfg.listen_addr.endswith(":443"):
        c.warn(
            "tls_letsencrypt_challenge_type",
            "when using tls_letsencrypt_hostname with TLS-ALPN-01 as challenge type, the server must be "
            "reachable on port 443, i.e. listen_addr should probably end in :443",
        )


def _prefixes(c: _Checker) -> None:
    p = c.cfg.prefixes
    # A prefix that failed to parse was reported already; only complain when none was given at all.
    given = [k for k in ("prefixes.v4", "prefixes.v6") if k in c.settings and c.settings[k].value]
    if p.v4 is None and p.v6 is None and not given:
        c.error("prefixes", "no IPv4 or IPv6 prefix configured, minimum one prefix is required")
    if p.allocation not in ("sequential", "random"):
        c.error(
            "prefixes.allocation",
            f"config error, prefixes.allocation is set to {p.allocation}, which is not a valid strategy, "
            "allowed options: sequential, random",
        )


def _database(c: _Checker) -> None:
    db = c.cfg.database
    if db.type == "postgres":
        c.error("database.type", "database.type postgres is not supported by pyscale; use sqlite")
    elif db.type not in ("sqlite", "sqlite3"):
        c.error("database.type", f"invalid database type {db.type!r}, must be sqlite, sqlite3 or postgres")
    elif not db.sqlite.path:
        c.error("database.sqlite.path", "database.sqlite.path must be set when database.type is sqlite")
    if db.sqlite.wal_autocheckpoint < 0:
        c.error("database.sqlite.wal_autocheckpoint", "database.sqlite.wal_autocheckpoint must be >= 0")


def _dns(c: _Checker) -> None:
    dns = c.cfg.dns
    if dns.override_local_dns and not dns.nameservers.global_:
        c.error(
            "dns.nameservers.global",
            "dns.nameservers.global must be set when dns.override_local_dns is true",
            at=_first_set(c, "dns.override_local_dns", "dns.nameservers.global"),
        )
    if dns.magic_dns and not dns.base_domain:
        c.error(
            "dns.base_domain",
            "dns.base_domain must be set when using MagicDNS (dns.magic_dns)",
            at=_first_set(c, "dns.magic_dns", "dns.base_domain"),
        )
    if dns.base_domain:
        err = domain_error(dns.base_domain)
        if err:
            c.error("dns.base_domain", f"dns.base_domain: {err}")
        err = is_safe_server_url(c.cfg.server_url, dns.base_domain)
        if err:
            c.error("dns.base_domain", err)
    if dns.extra_records and dns.extra_records_path:
        c.error(
            "dns.extra_records_path",
            "dns.extra_records and dns.extra_records_path are mutually exclusive. Please remove one of them "
            "from your config file",
        )
    for ns in dns.nameservers.global_:
        if not _is_nameserver(ns):
            c.warn("dns.nameservers.global", f"Invalid global nameserver {ns!r}, ignoring")
    for domain, servers in dns.nameservers.split.items():
        for ns in servers:
            if not _is_nameserver(ns):
                c.warn("dns.nameservers.split", f"Invalid split dns nameserver {ns!r} for {domain}, ignoring")


def _first_set(c: _Checker, *keys: str) -> str:
    return next((k for k in keys if k in c.settings), keys[-1])


def domain_error(name: str) -> str | None:
    """Why ``name`` is not a usable DNS suffix: a FQDN without the trailing dot."""
    if name.endswith("."):
        return f"{name!r} must be written without the trailing dot"
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return f"{name!r} is not a valid domain name (letters, digits and '-' in dot-separated labels)"
    return None


def _is_nameserver(ns: str) -> bool:
    try:
        ipaddress.ip_address(ns)
        return True
    except ValueError:
        parts = urlsplit(ns)
        return parts.scheme in ("https", "http") and bool(parts.hostname)


def _derp(c: _Checker) -> None:
    d = c.cfg.derp
    s = d.server
    for u in d.urls:
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            c.error("derp.urls", f"derp.urls: {u!r} is not an http(s) URL")
    if d.update_frequency < 0:
        c.error("derp.update_frequency", "derp.update_frequency must not be negative")
    if not s.enabled:
        return
    if not s.stun_listen_addr:
        c.error(
            "derp.server.stun_listen_addr",
            "derp.server.stun_listen_addr must be set if derp.server.enabled is true",
            at="derp.server.enabled",
        )
    else:
        _check_addr(c, "derp.server.stun_listen_addr", s.stun_listen_addr)
    if not s.automatically_add_embedded_derp_region and not d.paths:
        c.error(
            "derp.server.automatically_add_embedded_derp_region",
            "Disabling derp.server.automatically_add_embedded_derp_region requires to configure the derp "
            "server in derp.paths",
        )
    if s.private_key_path and s.private_key_path == c.cfg.noise.private_key_path:
        c.error(
            "derp.server.private_key_path",
            "derp.server.private_key_path must differ from noise.private_key_path (DERP server private key "
            "and noise private key are the same)",
        )
    if not 0 <= s.region_id <= 2**31 - 1:
        c.error("derp.server.region_id", "derp.server.region_id must be between 0 and 2147483647")
    for key, fam in (("derp.server.ipv4", 4), ("derp.server.ipv6", 6)):
        value = getattr(s, key.rsplit(".", 1)[1])
        if value and not _is_ip(value, fam):
            c.error(key, f"{key}: {value!r} is not an IPv{fam} address")


def _is_ip(text: str, family: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == family
    except ValueError:
        return False


def _misc(c: _Checker) -> None:
    cfg = c.cfg
    if cfg.ephemeral_node_inactivity_timeout <= MIN_EPHEMERAL_TIMEOUT:
        raw = c.settings.get("ephemeral_node_inactivity_timeout")
        shown = raw.value if raw is not None else "120s"
        c.error(
            "ephemeral_node_inactivity_timeout",
            f"ephemeral_node_inactivity_timeout ({shown}) is set too low, must be more than 1m5s",
        )
    if cfg.policy.mode not in ("file", "database"):
        c.error("policy.mode", f"policy.mode must be file or database, got {cfg.policy.mode!r}")
    if cfg.log.level.lower() not in LOG_LEVELS:
        c.warn("log.level", f"log.level {cfg.log.level!r} is not one of {', '.join(LOG_LEVELS)}; using debug")
    if cfg.log.format not in ("text", "json", ""):
        msg = f"Could not parse log format: {cfg.log.format}. Valid choices are 'json' or 'text'"
        c.warn("log.format", msg)
    if cfg.cli.address and not cfg.cli.api_key:
        c.warn("cli.api_key", "cli.address is set but cli.api_key is empty: remote CLI calls will fail")


def _oidc(c: _Checker) -> None:
    o = c.cfg.oidc
    if o.client_secret and o.client_secret_path:
        msg = "oidc_client_secret and oidc_client_secret_path are mutually exclusive"
        c.error("oidc.client_secret_path", msg)
    if o.enabled and o.pkce.method not in ("plain", "S256"):
        c.error("oidc.pkce.method", "pkce.method must be either 'plain' or 'S256'")
    if o.issuer:
        msg = "OIDC is parsed but not supported by pyscale yet; only CLI/pre-auth-key login works"
        c.warn("oidc.issuer", msg)


__all__ = ["validate", "addr_error", "domain_error", "is_safe_server_url"]
