"""check_files=True: the files a config names exist and have the format the server will need."""

from __future__ import annotations

import pathlib

from pyscale.config import format_configtest, load_config_report
from pyscale.config.files import read_derp_map_file

HS = pathlib.Path(__file__).resolve().parent / "data" / "headscale"
GOOD = (
    "server_url: https://hs.example.org\nlisten_addr: 127.0.0.1:8080\nnoise:\n  private_key_path: noise.key\n"
    "database:\n  type: sqlite\n  sqlite:\n    path: db.sqlite\nprefixes:\n  v4: 100.64.0.0/10\n"
    "dns:\n  magic_dns: false\n  override_local_dns: false\n"
)


def test_headscale_derp_example_parses() -> None:
    m = read_derp_map_file(str(HS / "derp-example-v0.27.1.yaml"))
    assert m.problems == []
    assert m.regions[1] is None  # "1: null" removes region 1
    region = m.regions[900]
    assert region is not None
    assert (region["regionid"], region["regioncode"], region["regionname"]) == (900, "custom", "My Region")
    assert region["nodes"][0]["hostname"] == "myderp.example.com"
    assert region["nodes"][0]["stunport"] == 0


def test_bad_derp_map_file_has_lines(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "derp.yaml"
    p.write_text("regions:\n  900:\n    regionid: 901\n    nodes: []\n  abc: null\n")
    problems = read_derp_map_file(str(p)).problems
    got = sorted((pr.line, pr.message) for pr in problems)
    assert got == [
        (3, "region 900: needs a list of nodes"),
        (3, "region 900: regionid is 901, expected 900"),
        (5, "region key 'abc' is not a number"),
    ]
    p.write_text("regions:\n  900: [\n")
    [syntax] = read_derp_map_file(str(p)).problems
    assert syntax.line == 3 and "YAML syntax error" in syntax.message


def test_files_checked_only_when_asked(write, tmp_path: pathlib.Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # derp.paths are used as given, i.e. relative to the working directory
    path = write(
        GOOD + "policy:\n  path: acl.hujson\ntls_cert_path: c.pem\ntls_key_path: k.pem\n"
        "derp:\n  paths: [missing-derp.yaml]\n"
    )
    assert load_config_report(path, env={}).ok
    r = load_config_report(path, env={}, check_files=True)
    got = {(e.key, e.line) for e in r.errors}
    assert {("policy.path", 15), ("tls_cert_path", 16), ("tls_key_path", 17), ("derp.paths", 19)} <= got
    assert str(tmp_path / "acl.hujson") in format_configtest(r)
    for name in ("acl.hujson", "c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    (tmp_path / "missing-derp.yaml").write_text((HS / "derp-example-v0.27.1.yaml").read_text())
    r = load_config_report(path, env={}, check_files=True)
    assert r.ok, format_configtest(r)


def test_key_files_absent_is_fine_malformed_is_not(write, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    path = write(GOOD)
    assert load_config_report(path, env={}, check_files=True).ok
    (tmp_path / "noise.key").write_text("privkey:" + "ab" * 32 + "\n")
    assert load_config_report(path, env={}, check_files=True).ok
    (tmp_path / "noise.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    r = load_config_report(path, env={}, check_files=True)
    [err] = r.errors
    assert (err.key, err.line) == ("noise.private_key_path", 4)


def test_embedded_region_must_be_in_derp_paths(write, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    derp_map = str(HS / "derp-example-v0.27.1.yaml")
    base = GOOD + f"derp:\n  paths: [{derp_map}]\n  server:\n    enabled: true\n    stun_listen_addr: :3478\n"
    base += "    automatically_add_embedded_derp_region: false\n"
    r = load_config_report(write(base + "    region_id: 999\n"), env={}, check_files=True)
    assert [e.message for e in r.errors] == ["no file in derp.paths describes the embedded region 999"]
    r = load_config_report(write(base + "    region_id: 900\n"), env={}, check_files=True)
    assert r.ok, format_configtest(r)


def test_extra_records_file(write, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    path = write(GOOD.replace("dns:\n", "dns:\n  extra_records_path: records.json\n"))
    records = tmp_path / "records.json"
    r = load_config_report(path, env={}, check_files=True)
    assert [e.key for e in r.errors] == ["dns.extra_records_path"]  # missing
    records.write_text('[{"Name": "a.example.net", "Type": "A", "Value": "100.64.0.5"}]')
    # The path is used as given (not relative to the config file), as Headscale does.
    path = write(GOOD.replace("dns:\n", f"dns:\n  extra_records_path: {records}\n"))
    assert load_config_report(path, env={}, check_files=True).ok
    records.write_text('{"not": "a list"}')
    r = load_config_report(path, env={}, check_files=True)
    assert [e.key for e in r.errors] == ["dns.extra_records_path"]
