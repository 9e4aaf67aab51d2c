"""The example config, the embedded default and the shape of Config (attribute paths = YAML key paths)."""

from __future__ import annotations

import ipaddress
import pathlib

from pyscale.config import (
    Config,
    ConfigError,
    describe_locations,
    embedded_default,
    format_configtest,
    load_config,
    load_config_report,
)

DATA = pathlib.Path(__file__).resolve().parent / "data"
EXAMPLE = str(DATA / "headscale" / "config-example-v0.27.1.yaml")


def test_headscale_example_loads_with_its_values() -> None:
    report = load_config_report(EXAMPLE, env={})
    assert report.ok, format_configtest(report)
    assert report.warnings == [] and report.mappings == []
    cfg = report.config
    assert isinstance(cfg, Config)
    assert cfg.source_path == EXAMPLE
    assert cfg.server_url == "http://127.0.0.1:8080"
    assert (cfg.listen_addr, cfg.metrics_listen_addr, cfg.grpc_listen_addr) == (
        "127.0.0.1:8080",
        "127.0.0.1:9090",
        "127.0.0.1:50443",
    )
    assert cfg.grpc_allow_insecure is False
    assert cfg.noise.private_key_path == "/var/lib/headscale/noise_private.key"
    assert cfg.prefixes.v4 == ipaddress.IPv4Network("100.64.0.0/10")
    assert cfg.prefixes.v6 == ipaddress.IPv6Network("fd7a:115c:a1e0::/48")
    assert cfg.prefixes.allocation == "sequential"
    s = cfg.derp.server
    assert (s.enabled, s.region_id, s.region_code, s.region_name) == (
        False,
        999,
        "headscale",
        "Headscale Embedded DERP",
    )
    assert (s.verify_clients, s.stun_listen_addr) == (True, "0.0.0.0:3478")
    assert (s.ipv4, s.ipv6) == ("198.51.100.1", "2001:db8::1")
    assert s.private_key_path == "/var/lib/headscale/derp_server_private.key"
    assert s.automatically_add_embedded_derp_region is True
    assert cfg.derp.urls == ("https://controlplane.tailscale.com/derpmap/default",)
    assert cfg.derp.paths == ()
    assert cfg.derp.auto_update_enabled is True
    assert cfg.derp.update_frequency == 3 * 3600
    assert cfg.disable_check_updates is False
    assert cfg.ephemeral_node_inactivity_timeout == 30 * 60
    assert cfg.database.type == "sqlite3"  # "sqlite" normalised as Headscale does
    assert cfg.database.sqlite.path == "/var/lib/headscale/db.sqlite"
    assert cfg.database.sqlite.write_ahead_log is True
    assert cfg.database.sqlite.wal_autocheckpoint == 1000
    assert cfg.database.gorm.slow_threshold == 1000
    assert cfg.acme_url == "https://acme-v02.api.letsencrypt.org/directory"
    assert cfg.tls_letsencrypt_hostname == "" and cfg.tls_cert_path == "" and cfg.tls_key_path == ""
    assert cfg.tls_letsencrypt_cache_dir == "/var/lib/headscale/cache"
    assert cfg.tls_letsencrypt_listen == ":http"
    assert cfg.tls_enabled is False
    assert (cfg.log.level, cfg.log.format) == ("info", "text")
    assert (cfg.policy.mode, cfg.policy.path) == ("file", "")
    d = cfg.dns
    assert (d.magic_dns, d.base_domain, d.override_local_dns) == (True, "example.com", True)
    assert d.nameservers.global_ == ("1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001")
    assert d.nameservers.split == {}
    assert d.search_domains == () and d.extra_records == () and d.extra_records_path == ""
    assert cfg.unix_socket == "/var/run/headscale/headscale.sock"
    assert cfg.unix_socket_permission == 0o770
    assert cfg.logtail.enabled is False
    assert cfg.randomize_client_port is False
    assert cfg.oidc.issuer == "" and cfg.oidc.expiry == 180 * 86400
    assert cfg.oidc.scope == ("openid", "profile", "email")
    assert cfg.cli.timeout == 5.0 and cfg.cli.address == ""
    assert cfg.tuning.batch_change_delay == 0.8
    assert cfg.tuning.register_cache_expiration == 15 * 60
    assert cfg.tuning.batcher_workers >= 1
    assert cfg.server_host == "127.0.0.1"
    assert cfg.data_dir == "/var/lib/headscale"


def test_load_config_returns_config_and_raises_on_errors(write) -> None:  # type: ignore[no-untyped-def]
    assert load_config(EXAMPLE, env={}).server_url == "http://127.0.0.1:8080"
    bad = write("server_url: ftp://x\n")
    try:
        load_config(bad, env={})
    except ConfigError as e:
        text = str(e)
        assert f"{bad}:1: server_url must start with https:// or http://" in text
        assert "no IPv4 or IPv6 prefix configured" in text  # every problem, not just the first
        assert len(e.problems) >= 4
    else:
        raise AssertionError("ConfigError not raised")


def test_embedded_default(tmp_path: pathlib.Path) -> None:
    cfg = embedded_default(str(tmp_path))
    assert cfg.source_path is None
    assert cfg.server_url == "http://127.0.0.1:8080"
    assert (cfg.listen_addr, cfg.metrics_listen_addr, cfg.grpc_listen_addr) == (
        "127.0.0.1:8080",
        "127.0.0.1:9090",
        "127.0.0.1:50443",
    )
    for path in (
        cfg.database.sqlite.path,
        cfg.noise.private_key_path,
        cfg.derp.server.private_key_path,
        cfg.unix_socket,
    ):
        assert pathlib.Path(path).parent == tmp_path
    assert cfg.noise.private_key_path != cfg.derp.server.private_key_path
    assert cfg.database.type == "sqlite3"
    assert str(cfg.prefixes.v4) == "100.64.0.0/10" and str(cfg.prefixes.v6) == "fd7a:115c:a1e0::/48"
    assert cfg.prefixes.allocation == "sequential"
    assert cfg.derp.server.enabled and cfg.derp.server.stun_listen_addr == "127.0.0.1:3478"
    assert cfg.derp.urls == ()  # offline: nothing fetched at start
    assert cfg.dns.magic_dns and cfg.dns.base_domain == "pyscale.internal"
    assert cfg.data_dir == str(tmp_path)
    text = describe_locations(cfg)
    for needle in (cfg.database.sqlite.path, cfg.noise.private_key_path, cfg.unix_socket, "127.0.0.1:8080"):
        assert needle in text


def test_embedded_mode_of_report_applies_env(tmp_path: pathlib.Path) -> None:
    env = {"PYSCALE_LISTEN_ADDR": "127.0.0.1:18080", "PYSCALE_SERVER_URL": "http://127.0.0.1:18080"}
    report = load_config_report(None, env, search_dirs=[str(tmp_path)], embedded_data_dir=str(tmp_path))
    assert report.ok, format_configtest(report)
    assert report.source_path is None
    assert report.config.listen_addr == "127.0.0.1:18080"
    assert "(none: embedded default)" in format_configtest(report)


def test_no_file_without_embedded_is_an_error(tmp_path: pathlib.Path) -> None:
    report = load_config_report(None, {"HOME": str(tmp_path)}, search_dirs=[str(tmp_path)])
    assert not report.ok
    assert "no config file found" in str(report.errors[0])


def test_deploy_example_is_valid_and_uses_only_current_keys() -> None:
    example = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "config.example.yaml"
    report = load_config_report(str(example), env={})
    assert report.ok, format_configtest(report)
    assert report.mappings == [] and report.warnings == [], format_configtest(report)
    cfg = report.config
    assert cfg.server_url == "https://headscale.example.com"
    assert cfg.unix_socket_permission == 0o770
    assert cfg.dns.base_domain == "tailnet.example.net" and cfg.dns.magic_dns


def test_example_documents_every_headscale_example_key() -> None:
    """Every key in Headscale's example config also appears in ours (commented out for oidc)."""
    import yaml

    def keys(node: object, prefix: str = "") -> set[str]:
        if not isinstance(node, dict):
            return {prefix}
        out: set[str] = set()
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            out |= keys(v, path) if isinstance(v, dict) and v else {path}
        return out

    hs = keys(yaml.safe_load(pathlib.Path(EXAMPLE).read_text()))
    ours_text = (pathlib.Path(__file__).resolve().parents[2] / "deploy" / "config.example.yaml").read_text()
    ours = keys(yaml.safe_load(ours_text))
    skipped = {k for k in hs if k.startswith("database.gorm.")}  # gorm tuning has no meaning in pyscale
    assert hs - ours - skipped == set()


def test_cli_config_ignores_server_only_problems(write, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    from pyscale.config import load_cli_config

    minimal = str(DATA / "headscale" / "minimal.yaml")  # no prefixes, no database: the server refuses it
    assert not load_config_report(minimal, env={}).ok
    cfg = load_cli_config(minimal, env={"PYSCALE_CLI_TIMEOUT": "9s"})
    assert cfg.unix_socket == "/var/run/headscale/headscale.sock" and cfg.cli.timeout == 9
    for text in ("unix_socket: /x.sock\ncli:\n  timeout: often\n", "a: [\n"):
        try:
            load_cli_config(write(text), env={})
        except ConfigError as e:
            assert all(p.key in ("", "cli.timeout") for p in e.problems), e
        else:
            raise AssertionError("ConfigError not raised")
    # No file at all: the embedded default's socket, so the CLI finds a server started without a config.
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = load_cli_config(None, {}, search_dirs=[str(empty)], embedded_data_dir=str(empty))
    assert cfg.unix_socket == str(empty / "pyscale.sock")


def test_string_keys_keep_what_was_written(write) -> None:  # type: ignore[no-untyped-def]
    text = (DATA / "headscale" / "config-example-v0.27.1.yaml").read_text()
    text = text.replace('region_code: "headscale"', "region_code: no").replace(
        'region_name: "Headscale Embedded DERP"', "region_name: 0123"
    )
    cfg = load_config(write(text), env={})
    assert (cfg.derp.server.region_code, cfg.derp.server.region_name) == ("no", "0123")
