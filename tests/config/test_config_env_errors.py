"""Environment overrides, config file search, and errors: every problem reported at once with file:line."""

from __future__ import annotations

import math
import pathlib

import pytest

from pyscale.config import ConfigError, find_config_file, format_configtest, load_config, load_config_report
from pyscale.config.coerce import CoerceError, parse_go_duration, parse_prom_duration

HS = pathlib.Path(__file__).resolve().parent / "data" / "headscale"
MINIMAL = str(HS / "minimal.yaml")
GOOD = (
    "server_url: https://hs.example.org\nlisten_addr: 127.0.0.1:8080\nnoise:\n  private_key_path: /k/n.key\n"
    "database:\n  type: sqlite\n  sqlite:\n    path: /d/db.sqlite\nprefixes:\n  v4: 100.64.0.0/10\n"
    "dns:\n  magic_dns: false\n  override_local_dns: false\n"
)


def test_headscale_env_overrides_like_headscales_test() -> None:
    env = {
        "HEADSCALE_LOG_LEVEL": "trace",
        "HEADSCALE_DATABASE_SQLITE_WRITE_AHEAD_LOG": "false",
        "HEADSCALE_PREFIXES_V4": "100.64.0.0/10",
        "HEADSCALE_DNS_MAGIC_DNS": "true",
        "HEADSCALE_DNS_BASE_DOMAIN": "example.com",
        "HEADSCALE_DNS_OVERRIDE_LOCAL_DNS": "false",
        "HEADSCALE_DNS_NAMESERVERS_GLOBAL": "1.1.1.1 8.8.8.8",
        "HEADSCALE_DNS_SEARCH_DOMAINS": "test.com bar.com",
    }
    cfg = load_config_report(MINIMAL, env).config
    assert cfg.log.level == "trace"
    assert cfg.database.sqlite.write_ahead_log is False
    assert str(cfg.prefixes.v4) == "100.64.0.0/10"
    d = cfg.dns
    assert (d.magic_dns, d.base_domain, d.override_local_dns) == (True, "example.com", False)
    assert d.nameservers.global_ == ("1.1.1.1", "8.8.8.8")
    assert d.search_domains == ("test.com", "bar.com")
    assert d.nameservers.split == {}


def test_pyscale_env_wins_over_headscale_env_and_file(write) -> None:  # type: ignore[no-untyped-def]
    path = write(GOOD)
    env = {
        "HEADSCALE_LISTEN_ADDR": "127.0.0.1:1111",
        "PYSCALE_LISTEN_ADDR": "127.0.0.1:2222",
        "HEADSCALE_EPHEMERAL_NODE_INACTIVITY_TIMEOUT": "10m",
        "PYSCALE_DATABASE_SQLITE_PATH": "",  # empty = unset, as viper
        "HEADSCALE_DERP_SERVER_REGION_ID": "900",
    }
    r = load_config_report(path, env)
    assert r.ok, format_configtest(r)
    assert r.config.listen_addr == "127.0.0.1:2222"
    assert r.config.ephemeral_node_inactivity_timeout == 600
    assert r.config.database.sqlite.path == "/d/db.sqlite"
    assert r.config.derp.server.region_id == 900


def test_env_errors_name_the_variable(write) -> None:  # type: ignore[no-untyped-def]
    env = {"PYSCALE_EPHEMERAL_NODE_INACTIVITY_TIMEOUT": "30", "HEADSCALE_DNS_NAMESERVERS_SPLIT": "x"}
    r = load_config_report(write(GOOD), env)
    [err] = r.errors
    assert str(err).startswith("env PYSCALE_EPHEMERAL_NODE_INACTIVITY_TIMEOUT: ")
    assert "missing unit" in err.message
    assert any(w.where.env == "HEADSCALE_DNS_NAMESERVERS_SPLIT" for w in r.warnings)


def test_every_problem_reported_together_with_lines(write) -> None:  # type: ignore[no-untyped-def]
    path = write(
        "server_url: headscale.example.com\n"  # 1
        "listen_addr: 127.0.0.1:99999\n"  # 2
        "noise:\n  private_key_path: /k/same.key\n"  # 3-4
        "prefixes:\n  v4: 10.0.0.0/33\n  v6: 100.64.0.0/10\n  allocation: roundrobin\n"  # 5-8
        "derp:\n  server:\n    enabled: yes\n    private_key_path: /k/same.key\n"  # 9-12
        "  update_frequency: soon\n"  # 13
        "database:\n  type: postgres\n"  # 14-15
        "ephemeral_node_inactivity_timeout: 60s\n"  # 16
        "dns:\n  base_domain: example.com.\n  extra_records: [{name: x}]\n"  # 17-19
        "log:\n  level: loud\n"  # 20-21
        "grpc_allow_insecure: maybe\n"  # 22
    )
    r = load_config_report(path, env={})
    got = {(e.key, e.line) for e in r.errors}
    expected = {
        ("server_url", 1),
        ("listen_addr", 2),
        ("prefixes.v4", 6),
        ("prefixes.v6", 7),
        ("prefixes.allocation", 8),
        ("derp.server.stun_listen_addr", 11),
        ("derp.server.private_key_path", 12),
        ("derp.update_frequency", 13),
        ("database.type", 15),
        ("ephemeral_node_inactivity_timeout", 16),
        ("dns.base_domain", 18),
        ("dns.extra_records", 19),
        ("grpc_allow_insecure", 22),
    }
    assert expected <= got, format_configtest(r)
    assert ("log.level", 21) in {(w.key, w.line) for w in r.warnings}
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    text = str(exc.value)
    assert len(exc.value.problems) == len(r.errors)
    for key, line in expected:
        assert f"{path}:{line}: " in text, (key, line)
    out = format_configtest(r)
    assert out.rstrip().endswith(f"FAIL: {len(r.errors)} error(s)")


@pytest.mark.parametrize(
    "text,line,fragment",
    [
        ("server_url: http://a\nnoise:\n  private_key_path: x\n   bad: indent\n", 4, "YAML syntax error"),
        ("a: [1, 2\nb: 3\n", 2, "YAML syntax error"),
        ("server_url: 'unterminated\n", 2, "YAML syntax error"),
        ("- just\n- a list\n", 1, "top level must be a mapping"),
        ("server_url: http://a\nserver_url: http://b\n", 2, "duplicate key 'server_url' (first defined"),
    ],
)
def test_yaml_errors_have_file_and_line(write, text: str, line: int, fragment: str) -> None:  # type: ignore[no-untyped-def]
    path = write(text)
    r = load_config_report(path, env={})
    matching = [e for e in r.errors if fragment in e.message]
    assert matching, format_configtest(r)
    assert (matching[0].file, matching[0].line) == (path, line)
    assert f"{path}:{line}: " in format_configtest(r)


def test_missing_explicit_file_is_an_error(tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    r = load_config_report(missing, env={})
    assert [str(e) for e in r.errors][0] == f"{missing}: config file not found"


def test_config_file_search_order(tmp_path: pathlib.Path) -> None:
    etc, home, cwd = tmp_path / "etc", tmp_path / "home", tmp_path / "cwd"
    for d in (etc, home / ".headscale", cwd):
        d.mkdir(parents=True)
    dirs = [str(etc), "~/.headscale", str(cwd)]
    env = {"HOME": str(home)}
    assert find_config_file(None, env, dirs) is None
    (cwd / "config.yaml").write_text("")
    assert find_config_file(None, env, dirs) == str(cwd / "config.yaml")
    (home / ".headscale" / "config.yaml").write_text("")
    assert find_config_file(None, env, dirs) == str(home / ".headscale" / "config.yaml")
    (etc / "config.yaml").write_text("")
    assert find_config_file(None, env, dirs) == str(etc / "config.yaml")
    env["HEADSCALE_CONFIG"] = str(tmp_path / "hs.yaml")
    assert find_config_file(None, env, dirs) == str(tmp_path / "hs.yaml")
    env["PYSCALE_CONFIG"] = str(tmp_path / "py.yaml")
    assert find_config_file(None, env, dirs) == str(tmp_path / "py.yaml")
    assert find_config_file(str(tmp_path / "c.yaml"), env, dirs) == str(tmp_path / "c.yaml")


def test_relative_paths_resolved_only_for_headscales_keys(write, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    path = write(
        GOOD.replace("/k/n.key", "keys/noise.key").replace("/d/db.sqlite", "db.sqlite")
        + "policy:\n  path: acl.hujson\ntls_cert_path: c.pem\ntls_key_path: k.pem\n"
        "tls_letsencrypt_cache_dir: cache\n"
        "derp:\n  paths: [derp.yaml]\n  server:\n    private_key_path: derp.key\n"
        "dns_extra: 1\n"
    )
    cfg = load_config_report(path, env={}).config
    for got, name in [
        (cfg.noise.private_key_path, "keys/noise.key"),
        (cfg.database.sqlite.path, "db.sqlite"),
        (cfg.policy.path, "acl.hujson"),
        (cfg.tls_cert_path, "c.pem"),
        (cfg.tls_key_path, "k.pem"),
        (cfg.tls_letsencrypt_cache_dir, "cache"),
        (cfg.derp.server.private_key_path, "derp.key"),
    ]:
        assert got == str(tmp_path / name)
    assert cfg.derp.paths == ("derp.yaml",)  # used as given, as Headscale does


@pytest.mark.parametrize(
    "raw,mode",
    [('"0770"', 0o770), ("0770", 0o770), ("770", 0o770), ('"0o770"', 0o770), ('"0600"', 0o600), ("", 0o700)],
)
def test_unix_socket_permission(write, raw: str, mode: int) -> None:  # type: ignore[no-untyped-def]
    text = GOOD + (f"unix_socket_permission: {raw}\n" if raw else "")
    assert load_config_report(write(text), env={}).config.unix_socket_permission == mode


def test_unix_socket_permission_garbage_falls_back_with_warning(write) -> None:  # type: ignore[no-untyped-def]
    r = load_config_report(write(GOOD + "unix_socket_permission: rwx\n"), env={})
    assert r.config.unix_socket_permission == 0o700
    assert any(w.key == "unix_socket_permission" and w.line == 14 for w in r.warnings)


@pytest.mark.parametrize(
    "text,seconds",
    [("30m", 1800), ("3h", 10800), ("120s", 120), ("1h30m", 5400), ("1.5h", 5400), ("800ms", 0.8),
     ("0", 0), ("-2m", -120), ("2h45m30.5s", 9930.5), ("10us", 1e-5)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "30", "3 h", "h", "1d", "1h-", "abc"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(CoerceError):
        parse_go_duration(text)


@pytest.mark.parametrize("text,seconds", [("180d", 180 * 86400), ("1w2d", 9 * 86400), ("1y", 365 * 86400),
                                          ("90m", 5400), ("1h30m", 5400), ("500ms", 0.5)])
def test_prometheus_durations(text: str, seconds: float) -> None:
    assert parse_prom_duration(text) == pytest.approx(seconds)


def test_oidc_expiry(write) -> None:  # type: ignore[no-untyped-def]
    assert load_config_report(write(GOOD + "oidc:\n  expiry: \"0\"\n"), env={}).config.oidc.expiry == math.inf
    assert load_config_report(write(GOOD + "oidc:\n  expiry: 30d\n"), env={}).config.oidc.expiry == 30 * 86400
    r = load_config_report(write(GOOD + "oidc:\n  expiry: forever\n"), env={})
    assert r.config.oidc.expiry == 180 * 86400 and any(w.key == "oidc.expiry" for w in r.warnings)


def test_section_given_a_scalar_and_unknown_keys(write) -> None:  # type: ignore[no-untyped-def]
    r = load_config_report(write(GOOD + "derp: true\nserver_urll: x\n"), env={})
    assert any(e.key == "derp" and e.line == 14 for e in r.errors)
    assert any(w.key == "server_urll" and w.line == 15 for w in r.warnings)
