"""The typed configuration: frozen dataclasses nested exactly like Headscale v0.27.1's YAML key paths.

Each leaf field carries its YAML key's *raw* default (as Headscale's viper default would be written in the
file) and a *kind* that says how the raw value is coerced (see ``coerce.py``). The loader walks these
dataclasses, so the set of known keys, their defaults and their types live in one place: this file.

Two names differ from the YAML because they are Python keywords: ``database.postgres.pass`` is ``pass_``
and ``dns.nameservers.global`` is ``global_``. Durations are float seconds; lists are tuples.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


def key(default: Any, kind: str, yaml_name: str | None = None) -> Any:
    """A leaf field: ``default`` is the raw (file-form) default, ``kind`` names its coercion."""
    return field(metadata={"default": default, "kind": kind, "yaml": yaml_name})


# Kinds (see coerce.py): str, bool, int, duration (Go syntax), promduration (Prometheus syntax, "0" = never),
# strlist, splitmap (domain -> list of resolvers), strmap, records (DNS extra records), filemode, path
# (relative to the config file's directory), prefix4, prefix6.


@dataclass(frozen=True)
class NoiseConfig:
    private_key_path: str = key("", "path")


@dataclass(frozen=True)
class PrefixesConfig:
    v4: ipaddress.IPv4Network | None = key("", "prefix4")
    v6: ipaddress.IPv6Network | None = key("", "prefix6")
    allocation: str = key("sequential", "str")


@dataclass(frozen=True)
class DerpStunConfig:
    enabled: bool = key(True, "bool")  # defaulted but never read by Headscale v0.27.1 (dead key)


@dataclass(frozen=True)
class DerpServerConfig:
    stun: DerpStunConfig
    enabled: bool = key(False, "bool")
    region_id: int = key(0, "int")
    region_code: str = key("", "str")
    region_name: str = key("", "str")
    verify_clients: bool = key(True, "bool")
    stun_listen_addr: str = key("", "str")
    private_key_path: str = key("", "path")
    automatically_add_embedded_derp_region: bool = key(True, "bool")
    ipv4: str = key("", "str")
    ipv6: str = key("", "str")


@dataclass(frozen=True)
class DerpConfig:
    server: DerpServerConfig
    urls: tuple[str, ...] = key([], "strlist")
    paths: tuple[str, ...] = key([], "strlist")  # used as given (not relative to the config file)
    auto_update_enabled: bool = key(False, "bool")
    update_frequency: float = key("3h", "duration")


@dataclass(frozen=True)
class GormConfig:
    prepare_stmt: bool = key(False, "bool")
    parameterized_queries: bool = key(False, "bool")
    skip_err_record_not_found: bool = key(False, "bool")
    slow_threshold: int = key(0, "int")  # milliseconds


@dataclass(frozen=True)
class SqliteConfig:
    path: str = key("", "path")
    write_ahead_log: bool = key(True, "bool")
    wal_autocheckpoint: int = key(1000, "int")


@dataclass(frozen=True)
class PostgresConfig:
    host: str = key("", "str")
    port: int = key(0, "int")
    name: str = key("", "str")
    user: str = key("", "str")
    pass_: str = key("", "str", yaml_name="pass")
    ssl: str = key("false", "str")
    max_open_conns: int = key(10, "int")
    max_idle_conns: int = key(10, "int")
    conn_max_idle_time_secs: int = key(3600, "int")


@dataclass(frozen=True)
class DatabaseConfig:
    gorm: GormConfig
    sqlite: SqliteConfig
    postgres: PostgresConfig
    type: str = key("", "str")  # normalised: "sqlite" and "sqlite3" both become "sqlite3" (as Headscale)
    debug: bool = key(False, "bool")


@dataclass(frozen=True)
class LogConfig:
    level: str = key("info", "str")  # panic/fatal/error/warn/info/debug/trace (else debug, as Headscale)
    format: str = key("text", "str")  # text | json


@dataclass(frozen=True)
class PolicyConfig:
    mode: str = key("file", "str")  # file | database
    path: str = key("", "path")  # empty: no policy file (allow all)


@dataclass(frozen=True)
class NameserversConfig:
    global_: tuple[str, ...] = key([], "strlist", yaml_name="global")
    split: dict[str, tuple[str, ...]] = key({}, "splitmap")


@dataclass(frozen=True)
class DNSConfig:
    nameservers: NameserversConfig
    magic_dns: bool = key(True, "bool")
    base_domain: str = key("", "str")
    override_local_dns: bool = key(True, "bool")
    search_domains: tuple[str, ...] = key([], "strlist")
    # Each record is {"name": ..., "type": ..., "value": ...}; only A/AAAA are honoured by clients.
    extra_records: tuple[dict[str, str], ...] = key([], "records")
    extra_records_path: str = key("", "str")  # used as given (Headscale does not resolve it)


@dataclass(frozen=True)
class LogtailConfig:
    enabled: bool = key(False, "bool")


@dataclass(frozen=True)
class CLIConfig:
    address: str = key("", "str")
    api_key: str = key("", "str")
    timeout: float = key("5s", "duration")
    insecure: bool = key(False, "bool")


@dataclass(frozen=True)
class PKCEConfig:
    enabled: bool = key(False, "bool")
    method: str = key("S256", "str")


@dataclass(frozen=True)
class OIDCConfig:
    pkce: PKCEConfig
    enabled: bool = key(False, "bool")  # undocumented; only gates the PKCE method check in Headscale
    only_start_if_oidc_is_available: bool = key(True, "bool")
    issuer: str = key("", "str")
    client_id: str = key("", "str")
    client_secret: str = key("", "str")
    client_secret_path: str = key("", "str")
    expiry: float = key("180d", "promduration")  # seconds; math.inf for "0" (never)
    use_expiry_from_token: bool = key(False, "bool")
    scope: tuple[str, ...] = key(["openid", "profile", "email"], "strlist")
    extra_params: dict[str, str] = key({}, "strmap")
    allowed_domains: tuple[str, ...] = key([], "strlist")
    allowed_users: tuple[str, ...] = key([], "strlist")
    allowed_groups: tuple[str, ...] = key([], "strlist")


@dataclass(frozen=True)
class TuningConfig:
    notifier_send_timeout: float = key("800ms", "duration")
    batch_change_delay: float = key("800ms", "duration")
    node_mapsession_buffered_chan_size: int = key(30, "int")
    batcher_workers: int = key(0, "int")  # 0: derived from the CPU count (3/4 of cores, at least 1)
    register_cache_expiration: float = key("15m", "duration")  # interactive registration id lifetime
    register_cache_cleanup: float = key("20m", "duration")


@dataclass(frozen=True)
class Config:
    noise: NoiseConfig
    prefixes: PrefixesConfig
    derp: DerpConfig
    database: DatabaseConfig
    log: LogConfig
    policy: PolicyConfig
    dns: DNSConfig
    logtail: LogtailConfig
    cli: CLIConfig
    oidc: OIDCConfig
    tuning: TuningConfig
    server_url: str = key("", "str")
    listen_addr: str = key("", "str")
    metrics_listen_addr: str = key("", "str")
    grpc_listen_addr: str = key(":50443", "str")
    grpc_allow_insecure: bool = key(False, "bool")
    unix_socket: str = key("/var/run/headscale/headscale.sock", "str")
    # Headscale's default is the string "0o770", which its octal parser rejects, so its effective default is
    # 0o700; pyscale keeps that effective default but reads an explicit "0o770" as 0o770.
    unix_socket_permission: int = key(None, "filemode")
    disable_check_updates: bool = key(False, "bool")
    ephemeral_node_inactivity_timeout: float = key("120s", "duration")
    randomize_client_port: bool = key(False, "bool")
    acme_url: str = key("", "str")
    acme_email: str = key("", "str")
    tls_letsencrypt_hostname: str = key("", "str")
    tls_letsencrypt_cache_dir: str = key("/var/www/.cache", "path")
    tls_letsencrypt_challenge_type: str = key("HTTP-01", "str")
    tls_letsencrypt_listen: str = key("", "str")
    tls_cert_path: str = key("", "path")
    tls_key_path: str = key("", "path")
    # Not a YAML key: the config file that was used (absolute), or None (embedded default / no file).
    source_path: str | None = None

    @property
    def server_host(self) -> str:
        """Hostname of server_url: the embedded DERP hostname and MapResponse.Domain (not dns.base_domain)."""
        return urlsplit(self.server_url).hostname or ""

    @property
    def data_dir(self) -> str:
        """Directory holding the SQLite database: where pyscale keeps its own state files."""
        return os.path.dirname(self.database.sqlite.path) or "."

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_letsencrypt_hostname or (self.tls_cert_path and self.tls_key_path))
