"""Headscale v0.27.1's own config fixtures (hscontrol/types/testdata) behave as its config_test.go expects.

Where Headscale's test only exercises part of the loading (e.g. just the DNS section of dns_full.yaml), the
same values are checked here, and the remaining errors of a full load are the ones Headscale's
LoadServerConfig would also give. pyscale additionally refuses an empty database.sqlite.path (SQLite would
silently use a throwaway temporary database), so the fixtures without one carry exactly that extra error.
"""

from __future__ import annotations

import pathlib

import pytest

from pyscale.config import format_configtest, load_config_report
from pyscale.config.validate import ERR_SERVER_URL_SAME, ERR_SERVER_URL_SUFFIX, is_safe_server_url

HS = pathlib.Path(__file__).resolve().parent / "data" / "headscale"
NO_PREFIX = "no IPv4 or IPv6 prefix configured, minimum one prefix is required"
BAD_DB = "invalid database type '', must be sqlite, sqlite3 or postgres"
NEEDS_GLOBAL = "dns.nameservers.global must be set when dns.override_local_dns is true"
NEEDS_BASE = "dns.base_domain must be set when using MagicDNS (dns.magic_dns)"
NO_SQLITE_PATH = "database.sqlite.path must be set when database.type is sqlite"


def load(name: str):  # type: ignore[no-untyped-def]
    return load_config_report(str(HS / name), env={})


def messages(problems) -> list[str]:  # type: ignore[no-untyped-def]
    return [p.message for p in problems]


DNS_FULL_GLOBAL = ("1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001", "https://dns.nextdns.io/abc123")


@pytest.mark.parametrize("name,magic", [("dns_full.yaml", True), ("dns_full_no_magic.yaml", False)])
def test_dns_full(name: str, magic: bool) -> None:
    r = load(name)
    dns = r.config.dns
    assert dns.magic_dns is magic
    assert dns.base_domain == "example.com"
    assert dns.override_local_dns is False
    assert dns.nameservers.global_ == DNS_FULL_GLOBAL
    split = {"darp.headscale.net": ("1.1.1.1", "8.8.8.8"), "foo.bar.com": ("1.1.1.1",)}
    assert dns.nameservers.split == split
    assert dns.extra_records == (
        {"name": "grafana.myvpn.example.com", "type": "A", "value": "100.64.0.3"},
        {"name": "prometheus.myvpn.example.com", "type": "A", "value": "100.64.0.4"},
    )
    assert dns.search_domains == ("test.com", "bar.com")
    # The file is "minimum to not fatal" for the DNS part only; a full load fails like LoadServerConfig.
    assert messages(r.errors) == [NO_PREFIX, BAD_DB]


def test_minimal_reports_everything_headscale_would_hit_one_by_one() -> None:
    r = load("minimal.yaml")
    assert r.config.server_url == "https://derp.no"
    assert r.config.noise.private_key_path == str(HS / "private_key.pem")  # relative to the config file
    assert sorted(messages(r.errors)) == sorted([NO_PREFIX, BAD_DB, NEEDS_GLOBAL, NEEDS_BASE])


def test_base_domain_in_server_url_is_refused_at_its_line() -> None:
    r = load("base-domain-in-server-url.yaml")
    errs = [e for e in r.errors if e.message == ERR_SERVER_URL_SUFFIX]
    assert len(errs) == 1
    assert (errs[0].file, errs[0].line) == (str(HS / "base-domain-in-server-url.yaml"), 15)
    assert messages(r.errors) == [NO_SQLITE_PATH, ERR_SERVER_URL_SUFFIX]


def test_base_domain_not_in_server_url_is_accepted() -> None:
    r = load("base-domain-not-in-server-url.yaml")
    assert r.config.server_url == "https://derp.no"
    assert r.config.dns.base_domain == "clients.derp.no"
    assert r.config.database.type == "sqlite3"
    assert messages(r.errors) == [NO_SQLITE_PATH]


def test_dns_override_true_without_global_nameservers() -> None:
    r = load("dns-override-true-error.yaml")
    errs = [e for e in r.errors if e.message == NEEDS_GLOBAL]
    assert len(errs) == 1 and errs[0].line == 16  # the override_local_dns line


def test_dns_override_true() -> None:
    r = load("dns-override-true.yaml")
    dns = r.config.dns
    assert (dns.magic_dns, dns.base_domain, dns.override_local_dns) == (True, "derp2.no", True)
    assert dns.nameservers.global_ == ("1.1.1.1", "1.0.0.1")
    assert dns.nameservers.split == {} and dns.search_domains == ()
    assert messages(r.errors) == [NO_SQLITE_PATH]


def test_policy_path_wins_over_acl_policy_path() -> None:
    r = load("policy-path-is-loaded.yaml")
    assert (r.config.policy.mode, r.config.policy.path) == ("file", "/etc/policy.hujson")
    [m] = r.mappings
    assert (m.old_key, m.new_key, m.applied, m.where.line) == ("acl_policy_path", "policy.path", False, 13)
    legacy = [w for w in r.warnings if w.key == "acl_policy_path"]
    assert len(legacy) == 1 and legacy[0].line == 13 and "policy.path" in legacy[0].message
    assert "wins" in legacy[0].message
    unknown = [w for w in r.warnings if w.key == "policy.type"]  # the fixture's stray key
    assert len(unknown) == 1 and unknown[0].line == 15
    assert messages(r.errors) == [NO_SQLITE_PATH], format_configtest(r)


@pytest.mark.parametrize(
    "server_url,base_domain,want",
    [
        ("https://example.com", "example.org", None),
        ("https://headscale.com", "headscale.com", ERR_SERVER_URL_SAME),
        ("https://headscale.com", "clients.headscale.com", None),
        ("https://headscale.com", "clients.subdomain.headscale.com", None),
        ("https://headscale.kristoffer.com", "mybase", None),
        ("https://server.headscale.com", "headscale.com", ERR_SERVER_URL_SUFFIX),
        ("https://server.subdomain.headscale.com", "headscale.com", ERR_SERVER_URL_SUFFIX),
        # pyscale compares host names, so a port does not hide the clash (Headscale compares host:port).
        ("https://server.headscale.com:443", "headscale.com", ERR_SERVER_URL_SUFFIX),
    ],
)
def test_safe_server_url(server_url: str, base_domain: str, want: str | None) -> None:
    assert is_safe_server_url(server_url, base_domain) == want


def test_tls_validation_like_headscale(write) -> None:  # type: ignore[no-untyped-def]
    path = write(
        "---\ntls_letsencrypt_hostname: example.com\ntls_letsencrypt_challenge_type: \"\"\n"
        "tls_cert_path: abc.pem\nnoise:\n  private_key_path: noise_private.key\n"
    )
    msgs = messages(load_config_report(path, env={}).errors)
    assert "set either tls_letsencrypt_hostname or tls_cert_path/tls_key_path, not both" in msgs
    assert "the only supported values for tls_letsencrypt_challenge_type are HTTP-01 and TLS-ALPN-01" in msgs
    assert "server_url must start with https:// or http://" in msgs

    path = write(
        "noise:\n  private_key_path: noise_private.key\nserver_url: http://127.0.0.1:8080\n"
        "tls_letsencrypt_hostname: example.com\ntls_letsencrypt_challenge_type: TLS-ALPN-01\n"
    )
    r = load_config_report(path, env={})
    assert not any("tls" in e.key for e in r.errors)
    assert any("TLS-ALPN-01" in w.message and w.line == 5 for w in r.warnings)


def test_example_derp_map_file_is_accepted_in_derp_paths(write) -> None:  # type: ignore[no-untyped-def]
    example = (HS / "config-example-v0.27.1.yaml").read_text()
    derp_map = str(HS / "derp-example-v0.27.1.yaml")
    path = write(example.replace("paths: []", f"paths: [{derp_map}]"))
    r = load_config_report(path, env={})
    assert r.ok, format_configtest(r)
    assert r.config.derp.paths == (derp_map,)
