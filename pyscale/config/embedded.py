"""The no-config-file mode of ``pyscale serve``: everything on 127.0.0.1, all state inside one data dir.

The embedded default is a set of raw settings fed through the same build and validation as a file, so it
cannot drift from what a file would give. ``describe_locations`` is what serve prints at startup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pyscale.config.model import Config
from pyscale.config.report import Setting, Where

EMBEDDED_WHERE = Where("<embedded default>")
EMBEDDED_BASE_DOMAIN = "pyscale.internal"


def default_data_dir(env: Mapping[str, str] = os.environ) -> str:
    """$PYSCALE_DATA_DIR, else $XDG_DATA_HOME/pyscale, else ~/.local/share/pyscale."""
    if env.get("PYSCALE_DATA_DIR"):
        return os.path.abspath(os.path.expanduser(env["PYSCALE_DATA_DIR"]))
    xdg = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".local/share")
    return os.path.join(xdg, "pyscale")


def embedded_settings(data_dir: str) -> dict[str, Setting]:
    d = os.path.abspath(data_dir)
    raw: dict[str, object] = {
        "server_url": "http://127.0.0.1:8080",
        "listen_addr": "127.0.0.1:8080",
        "metrics_listen_addr": "127.0.0.1:9090",
        "grpc_listen_addr": "127.0.0.1:50443",
        "unix_socket": os.path.join(d, "pyscale.sock"),
        "unix_socket_permission": "0770",
        "noise.private_key_path": os.path.join(d, "noise_private.key"),
        "prefixes.v4": "100.64.0.0/10",
        "prefixes.v6": "fd7a:115c:a1e0::/48",
        "prefixes.allocation": "sequential",
        "derp.server.enabled": True,
        "derp.server.region_id": 999,
        "derp.server.region_code": "pyscale",
        "derp.server.region_name": "pyscale embedded DERP",
        "derp.server.stun_listen_addr": "127.0.0.1:3478",
        "derp.server.private_key_path": os.path.join(d, "derp_server_private.key"),
        "derp.urls": [],  # offline by default: no fetch of Tailscale's public DERP map
        "derp.auto_update_enabled": False,
        "database.type": "sqlite",
        "database.sqlite.path": os.path.join(d, "db.sqlite"),
        "ephemeral_node_inactivity_timeout": "30m",
        "dns.magic_dns": True,
        "dns.base_domain": EMBEDDED_BASE_DOMAIN,
        "dns.override_local_dns": False,  # no global nameservers: clients keep their own resolvers
        "policy.mode": "file",
        "policy.path": "",
        "disable_check_updates": True,
    }
    return {k: Setting(v, EMBEDDED_WHERE, v if isinstance(v, str) else None) for k, v in raw.items()}


def embedded_default(data_dir: str) -> Config:
    """The embedded default Config for ``data_dir`` (no environment overrides applied)."""
    from pyscale.config.load import build_from_settings

    report = build_from_settings(embedded_settings(data_dir), None, {}, [], [])
    if report.errors:  # a bug in the table above, never a user error
        raise AssertionError("embedded default is invalid: " + "; ".join(map(str, report.errors)))
    return report.config


def describe_locations(cfg: Config) -> str:
    """Human summary of where everything is, printed by `pyscale serve` at startup."""
    s = cfg.derp.server
    rows = [
        ("config", cfg.source_path or "none (embedded default)"),
        ("server url", cfg.server_url),
        ("listen", f"{cfg.listen_addr} (TS2021, REST API, web pages" + (", DERP)" if s.enabled else ")")),
        ("metrics", cfg.metrics_listen_addr or "-"),
        ("grpc", cfg.grpc_listen_addr if (cfg.tls_enabled or cfg.grpc_allow_insecure) else "off (no TLS)"),
        ("cli socket", f"{cfg.unix_socket} (mode {cfg.unix_socket_permission:04o})"),
        ("database", f"{cfg.database.type} {cfg.database.sqlite.path}"),
        ("noise key", cfg.noise.private_key_path),
        ("derp", f"embedded, region {s.region_id}, STUN {s.stun_listen_addr}, key {s.private_key_path}"
         if s.enabled else "embedded server off"),
        ("derp maps", ", ".join([*cfg.derp.urls, *cfg.derp.paths]) or "-"),
        ("prefixes", ", ".join(str(p) for p in (cfg.prefixes.v4, cfg.prefixes.v6) if p)
         + f" ({cfg.prefixes.allocation})"),
        ("magic dns", f"on, {cfg.dns.base_domain}" if cfg.dns.magic_dns else "off"),
        ("policy", f"{cfg.policy.mode}: {cfg.policy.path}" if cfg.policy.path or cfg.policy.mode != "file"
         else "none (allow all)"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
