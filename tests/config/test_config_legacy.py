"""Pre-0.23 key names: each is mapped to its current key with exactly one warning (file:line), the current
key wins when both are set, and our first user's real config loads cleanly."""

from __future__ import annotations

import collections
import ipaddress
import pathlib

from pyscale.config import format_configtest, load_config_report

RUNBOOK = str(pathlib.Path(__file__).resolve().parent / "data" / "runbook-config.yaml")
BASE = (
    "server_url: https://hs.example.org\nlisten_addr: 127.0.0.1:8080\n"
    "noise:\n  private_key_path: /k/noise.key\n"
)
DB = "database:\n  type: sqlite\n  sqlite:\n    path: /d/db.sqlite\n"
PFX = "prefixes:\n  v4: 100.64.0.0/10\n"
DNS_OFF = "dns:\n  magic_dns: false\n  override_local_dns: false\n"


def one_warning_per_legacy_key(report) -> None:  # type: ignore[no-untyped-def]
    counts = collections.Counter(w.key for w in report.warnings)
    for m in report.mappings:
        assert counts[m.old_key] == 1, (m.old_key, format_configtest(report))


def test_runbook_config_loads_with_one_warning_per_legacy_key() -> None:
    r = load_config_report(RUNBOOK, env={})
    assert r.ok, format_configtest(r)
    expected = {
        "db_type": ("database.type", 27),
        "db_path": ("database.sqlite.path", 28),
        "ip_prefixes": ("prefixes.v4", 31),
        "dns_config.override_local_dns": ("dns.override_local_dns", 36),
        "dns_config.nameservers": ("dns.nameservers.global", 37),
        "dns_config.domains": ("dns.search_domains", 40),
        "dns_config.magic_dns": ("dns.magic_dns", 41),
        "dns_config.base_domain": ("dns.base_domain", 42),
        "acl_policy_path": ("policy.path", 49),
        "log_level": ("log.level", 52),
        "node_update_check_interval": (None, 58),
    }
    assert {m.old_key: (m.new_key, m.where.line) for m in r.mappings} == expected
    assert all(m.file == RUNBOOK and m.line == m.where.line for m in r.mappings)
    one_warning_per_legacy_key(r)
    for m in r.mappings:
        [w] = [w for w in r.warnings if w.key == m.old_key]
        assert (w.file, w.line) == (RUNBOOK, m.where.line)

    cfg = r.config
    assert cfg.server_url == "https://headscale.quietly.its.me"
    assert cfg.database.type == "sqlite3"
    assert cfg.database.sqlite.path == "/var/lib/headscale/db.sqlite"
    assert cfg.prefixes.v4 == ipaddress.IPv4Network("100.64.0.0/10") and cfg.prefixes.v6 is None
    assert cfg.dns.override_local_dns is False
    assert cfg.dns.nameservers.global_ == ("1.1.1.1", "8.8.8.8")
    assert cfg.dns.search_domains == ()
    assert cfg.dns.magic_dns is True and cfg.dns.base_domain == "quietly.cloud"
    assert (cfg.policy.mode, cfg.policy.path) == ("file", "/etc/headscale/acl.json")
    assert cfg.log.level == "info"
    assert cfg.ephemeral_node_inactivity_timeout == 1800
    assert cfg.derp.server.enabled and cfg.derp.server.region_code == "qui3tly"
    assert cfg.derp.update_frequency == 24 * 3600
    # The file names neither key file: the standard names next to the database are used, and said so.
    assert cfg.noise.private_key_path == "/var/lib/headscale/noise_private.key"
    assert cfg.derp.server.private_key_path == "/var/lib/headscale/derp_server_private.key"
    inferred = {w.key for w in r.warnings} - {m.old_key for m in r.mappings}
    assert inferred == {"noise.private_key_path", "derp.server.private_key_path"}
    text = format_configtest(r)
    assert f"{RUNBOOK}:27: db_type -> database.type" in text
    assert text.rstrip().endswith("OK")


def test_current_key_wins_with_a_warning_saying_so(write) -> None:  # type: ignore[no-untyped-def]
    path = write(BASE + DB + PFX + DNS_OFF + "db_path: /old/db.sqlite\nip_prefixes: [100.64.0.0/16]\n"
                 "log_level: debug\nlog:\n  level: warn\n")
    r = load_config_report(path, env={})
    assert r.ok, format_configtest(r)
    assert r.config.database.sqlite.path == "/d/db.sqlite"
    assert str(r.config.prefixes.v4) == "100.64.0.0/10"
    assert r.config.log.level == "warn"
    applied = {m.old_key: m.applied for m in r.mappings}
    assert applied == {"db_path": False, "ip_prefixes": False, "log_level": False}
    one_warning_per_legacy_key(r)
    w = next(w for w in r.warnings if w.key == "db_path")
    assert "database.sqlite.path" in w.message and "wins" in w.message and f"{path}:8" in w.message
    assert w.line == 14


def test_ip_prefixes_both_families_and_errors(write) -> None:  # type: ignore[no-untyped-def]
    ok = write(BASE + DB + DNS_OFF + "ip_prefixes:\n  - fd7a:115c:a1e0::/48\n  - 100.64.0.0/10\n")
    r = load_config_report(ok, env={})
    assert r.ok, format_configtest(r)
    assert str(r.config.prefixes.v4) == "100.64.0.0/10" and str(r.config.prefixes.v6) == "fd7a:115c:a1e0::/48"
    assert [m.new_key for m in r.mappings] == ["prefixes.v4 + prefixes.v6"]
    one_warning_per_legacy_key(r)

    # v4 already set by the current key: only v6 is taken from ip_prefixes, still one warning.
    part = write(BASE + DB + DNS_OFF + PFX + "ip_prefixes:\n  - fd7a:115c:a1e0::/48\n  - 100.100.0.0/16\n")
    r = load_config_report(part, env={})
    assert r.ok, format_configtest(r)
    assert str(r.config.prefixes.v4) == "100.64.0.0/10" and str(r.config.prefixes.v6) == "fd7a:115c:a1e0::/48"
    [m] = r.mappings
    assert m.applied and m.where.line == 14
    one_warning_per_legacy_key(r)
    [w] = [w for w in r.warnings if w.key == "ip_prefixes"]
    assert "'prefixes.v4'" in w.message and "wins" in w.message

    as_string = write(BASE + DB + DNS_OFF + "ip_prefixes: 100.64.0.0/10 fd7a:115c:a1e0::/48\n")
    r = load_config_report(as_string, env={})
    assert r.ok and r.config.prefixes.v4 is not None and r.config.prefixes.v6 is not None

    bad = write(BASE + DB + DNS_OFF + "ip_prefixes:\n  - 100.64.0.0/10\n  - 100.100.0.0/16\n  - nonsense\n")
    r = load_config_report(bad, env={})
    msgs = [str(e) for e in r.errors]
    assert any(f"{bad}:12:" in m and "only one IPv4 prefix" in m for m in msgs), msgs
    assert any(f"{bad}:12:" in m and "invalid IP prefix 'nonsense'" in m for m in msgs), msgs


def test_dns_config_section_maps_every_key(write) -> None:  # type: ignore[no-untyped-def]
    path = write(
        BASE + DB + PFX + "dns_config:\n"
        "  override_local_dns: true\n"
        "  nameservers: [1.1.1.1, https://dns.nextdns.io/abc]\n"
        "  restricted_nameservers:\n    corp.example.com: [10.0.0.53]\n"
        "  domains: [corp.example.com]\n"
        "  magic_dns: true\n"
        "  base_domain: ts.example.net\n"
        "  extra_records:\n    - {name: a.ts.example.net, type: A, value: 100.64.0.9}\n"
    )
    r = load_config_report(path, env={})
    assert r.ok, format_configtest(r)
    d = r.config.dns
    assert d.override_local_dns and d.magic_dns and d.base_domain == "ts.example.net"
    assert d.nameservers.global_ == ("1.1.1.1", "https://dns.nextdns.io/abc")
    assert d.nameservers.split == {"corp.example.com": ("10.0.0.53",)}
    assert d.search_domains == ("corp.example.com",)
    assert d.extra_records == ({"name": "a.ts.example.net", "type": "A", "value": "100.64.0.9"},)
    assert len(r.mappings) == 7
    one_warning_per_legacy_key(r)
    assert len(r.warnings) == 7  # nothing else to say about this file


def test_old_dns_config_defaults_are_kept(write) -> None:  # type: ignore[no-untyped-def]
    # Pre-0.23: MagicDNS was off unless enabled, and no nameservers meant "leave client DNS alone".
    path = write(BASE + DB + PFX + "dns_config:\n  domains: []\n")
    r = load_config_report(path, env={})
    assert r.ok, format_configtest(r)
    assert r.config.dns.magic_dns is False and r.config.dns.override_local_dns is False


def test_private_key_path_and_dropped_keys(write) -> None:  # type: ignore[no-untyped-def]
    # Only a pre-Noise key file: reused as the Noise key (relative to the config file's directory).
    path = write("server_url: https://hs.example.org\nprivate_key_path: private.key\n" + DB + PFX + DNS_OFF
                 + "tls_client_auth_mode: relaxed\noidc:\n  strip_email_domain: true\n")
    r = load_config_report(path, env={})
    assert r.ok, format_configtest(r)
    assert r.config.noise.private_key_path == str(pathlib.Path(path).parent / "private.key")
    assert {m.old_key: m.new_key for m in r.mappings} == {
        "private_key_path": "noise.private_key_path",
        "tls_client_auth_mode": None,
        "oidc.strip_email_domain": None,
    }
    one_warning_per_legacy_key(r)
    # With a Noise key too, the old key is ignored.
    path = write(BASE + "private_key_path: /k/legacy.key\n" + DB + PFX + DNS_OFF)
    r = load_config_report(path, env={})
    assert r.config.noise.private_key_path == "/k/noise.key"
    assert [(m.old_key, m.new_key) for m in r.mappings] == [("private_key_path", None)]


def test_legacy_db_keys_and_relative_db_path(write) -> None:  # type: ignore[no-untyped-def]
    path = write(BASE + PFX + DNS_OFF + "db_type: sqlite3\ndb_path: ./db.sqlite\n")
    r = load_config_report(path, env={})
    assert r.ok, format_configtest(r)
    assert r.config.database.sqlite.path == str(pathlib.Path(path).parent / "db.sqlite")


def test_newer_headscale_keys(write) -> None:  # type: ignore[no-untyped-def]
    """Keys from Headscale 0.28/0.29 docs: the renamed ephemeral timeout is mapped, the rest is ignored
    with a warning that says why (not as an anonymous unknown key)."""
    path = write(
        BASE + DB + PFX + DNS_OFF
        + "node:\n  expiry: 180d\n  ephemeral:\n    inactivity_timeout: 10m\n"
        + "  routes:\n    ha:\n      probe_interval: 10s\n"
        + "taildrop:\n  enabled: false\ntrusted_proxies: [127.0.0.1/32]\n"
    )
    r = load_config_report(path, env={})
    assert r.ok, format_configtest(r)
    assert r.config.ephemeral_node_inactivity_timeout == 600
    got = {m.old_key: m.new_key for m in r.mappings}
    assert got == {
        "node.expiry": None,
        "node.ephemeral.inactivity_timeout": "ephemeral_node_inactivity_timeout",
        "node.routes.ha.probe_interval": None,
        "taildrop.enabled": None,
        "trusted_proxies": None,
    }
    one_warning_per_legacy_key(r)
    assert not any("unknown key" in w.message for w in r.warnings)
