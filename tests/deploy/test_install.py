"""deploy/install.sh, rollback.sh and uninstall.sh into a temp root (--root): the host is never touched.

The root starts with copies of the host's account files (useradd --prefix edits them there) and,
for the drop-in cases, the runbook's Headscale install: its unit, its config, a database and a
stand-in for the Go binary (its bytes are what rollback must give back).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.deploy.installenv import SITE_PACKAGES, SYSTEM_PYTHON, unusable

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RUNBOOK = Path("/work/shared/user/headscale-runbook.md")
OLD_BINARY = b"#!/bin/sh\necho 'headscale version v0.27.1 (stand-in for the Go binary)'\n"

pytestmark = pytest.mark.skipif(unusable() is not None, reason=f"offline install impossible: {unusable()}")


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        if Path("/etc", name).exists():
            shutil.copy2(Path("/etc", name), root / "etc" / name)
    return root


def _script(name: str, root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["sh", str(DEPLOY / name), "--root", str(root), *args]
    if name == "install.sh":
        cmd += ["--python", SYSTEM_PYTHON, "--deps-from", SITE_PACKAGES]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def _account(root: Path) -> list[str]:
    lines = [ln for ln in (root / "etc/passwd").read_text().splitlines() if ln.startswith("headscale:")]
    assert len(lines) == 1, lines
    return lines[0].split(":")


def _mode(path: Path) -> str:
    st = path.stat()
    return f"{stat.S_IMODE(st.st_mode):o} {st.st_uid}:{st.st_gid}"


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if "__pycache__" in p.parts or ".prev" in str(p.relative_to(root)).split("/")[1:2]:
            continue
        rel = str(p.relative_to(root))
        if rel.startswith("opt/pyscale.prev") or rel.startswith("etc/") and rel.endswith("-"):
            continue
        kind = "l" + os.readlink(p) if p.is_symlink() else ("d" if p.is_dir() else "f")
        out[rel] = f"{kind} {_mode(p) if not p.is_symlink() else ''}"
    return out


def _runbook_block(lang: str, marker: str) -> str:
    text = RUNBOOK.read_text()
    m = re.search(re.escape(marker) + r".*?```" + lang + r"\n(.*?)```", text, re.S)
    assert m, marker
    return m.group(1)


def test_fresh_install_layout(tmp_path: Path) -> None:
    root = _root(tmp_path)
    out = _script("install.sh", root).stdout
    assert "created system user headscale" in out
    name, _, uid, gid, _, home, shell = _account(root)
    assert (home, shell) == ("/var/lib/headscale", "/usr/sbin/nologin") and int(uid) < 1000
    for d in ("etc/headscale", "var/lib/headscale"):
        assert _mode(root / d) == f"750 {uid}:{gid}"
    assert _mode(root / "etc/headscale/config.yaml") == f"640 {uid}:{gid}"
    assert _mode(root / "var/backups/headscale") == f"700 {uid}:{gid}"
    for name in ("pyscale-backup.service", "pyscale-backup.timer"):
        assert (root / "etc/systemd/system" / name).read_bytes() == (DEPLOY / name).read_bytes()
    assert not (root / "etc/systemd/system/timers.target.wants/pyscale-backup.timer").exists()  # opt-in
    assert os.readlink(root / "usr/local/bin/pyscale") == "/opt/pyscale/bin/pyscale"
    assert not (root / "usr/local/bin/headscale").exists()
    unit = (root / "etc/systemd/system/pyscale.service").read_text()
    assert unit.split("\n", 5)[5] == (DEPLOY / "pyscale.service").read_text().split("\n", 5)[5]
    assert os.readlink(root / "etc/systemd/system/multi-user.target.wants/pyscale.service").endswith(
        "/etc/systemd/system/pyscale.service")
    assert (root / "opt/pyscale/bin/pyscale").read_text().startswith("#!/opt/pyscale/bin/python\n")
    leaks = subprocess.run(["grep", "-rlI", str(root), str(root / "opt/pyscale/bin")], capture_output=True, text=True)
    assert leaks.stdout == ""  # no file in the venv's bin/ names the temp root
    res = subprocess.run([str(root / "opt/pyscale/bin/python"), "-m", "pyscale.cli.main", "-c",
                          str(root / "etc/headscale/config.yaml"), "configtest"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr
    # The installed tree passes systemd-analyze verify (with the distribution's units beside it).
    shutil.copytree("/lib/systemd/system", root / "lib/systemd/system", symlinks=True)
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy2("/bin/kill", root / "bin/kill")
    verify = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "pyscale.service"],
                            capture_output=True, text=True, timeout=60)
    assert (verify.returncode, verify.stderr) == (0, "")


def test_install_is_idempotent_and_keeps_the_config(tmp_path: Path) -> None:
    root = _root(tmp_path)
    _script("install.sh", root)
    config = root / "etc/headscale/config.yaml"
    config.write_text(config.read_text().replace("level: info", "level: debug"))
    first = _tree(root)
    out = _script("install.sh", root).stdout
    assert "created system user" not in out and "wrote /etc/headscale/config.yaml" not in out
    assert _tree(root) == first
    assert "level: debug" in config.read_text()
    _account(root)  # still exactly one


def test_rollback_to_previous_pyscale(tmp_path: Path) -> None:
    root = _root(tmp_path)
    _script("install.sh", root)
    (root / "opt/pyscale/VERSION-MARK").write_text("first")
    _script("install.sh", root)  # the "upgrade"
    (root / "opt/pyscale/VERSION-MARK").write_text("second")
    _script("rollback.sh", root, "pyscale")
    assert (root / "opt/pyscale/VERSION-MARK").read_text() == "first"
    assert (root / "opt/pyscale.rolled-back/VERSION-MARK").read_text() == "second"
    assert not (root / "opt/pyscale.prev").exists()
    assert _script("rollback.sh", root, "pyscale", check=False).returncode == 1  # nothing older kept


def _headscale_install(root: Path) -> dict[str, bytes]:
    """The runbook's native Headscale: user, 750 dirs, config, unit, binary, database."""
    subprocess.run(["useradd", "--prefix", str(root), "--system", "--user-group", "--shell", "/usr/sbin/nologin",
                    "headscale"], check=True, timeout=30)
    files = {
        "etc/headscale/config.yaml": _runbook_block("yaml", "**Location**: `/etc/headscale/config.yaml`").encode(),
        "etc/headscale/acl.json": _runbook_block("json", "**Location**: `/etc/headscale/acl.json`").encode(),
        "etc/systemd/system/headscale.service": _runbook_block("ini", "### systemd Unit File").encode(),
        "usr/local/bin/headscale": OLD_BINARY,
        "var/lib/headscale/db.sqlite": b"SQLite format 3\x00 stand-in bytes the installer must not touch",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "usr/local/bin/headscale").chmod(0o755)
    return files


def test_drop_in_takes_over_headscale_and_rolls_back(tmp_path: Path) -> None:
    root = _root(tmp_path)
    original = _headscale_install(root)
    for _ in range(2):  # twice: the kept originals must survive a re-run
        _script("install.sh", root, "--drop-in")
    bindir = root / "usr/local/bin"
    assert os.readlink(bindir / "headscale") == "/opt/pyscale/bin/pyscale"
    assert (bindir / "headscale.pre-pyscale").read_bytes() == OLD_BINARY
    assert (root / "var/backups/pyscale/headscale.service").read_bytes() == original[
        "etc/systemd/system/headscale.service"]
    unit = (root / "etc/systemd/system/headscale.service").read_text()
    assert "Type=notify" in unit and "/opt/pyscale/bin/pyscale -c /etc/headscale/config.yaml serve" in unit
    assert not (root / "etc/systemd/system/pyscale.service").exists()
    for rel in ("etc/headscale/config.yaml", "etc/headscale/acl.json", "var/lib/headscale/db.sqlite"):
        assert (root / rel).read_bytes() == original[rel]  # same config, same database, untouched
    uid, gid = _account(root)[2:4]
    assert _mode(root / "var/lib/headscale/db.sqlite") == f"600 {uid}:{gid}"

    out = _script("rollback.sh", root, "headscale").stdout
    assert "Headscale's binary and unit are back" in out
    assert (bindir / "headscale").read_bytes() == OLD_BINARY and not (bindir / "headscale").is_symlink()
    for rel, data in original.items():
        assert (root / rel).read_bytes() == data, rel


def test_uninstall_leaves_data_alone(tmp_path: Path) -> None:
    root = _root(tmp_path)
    _script("install.sh", root)
    _script("install.sh", root, "--backup-timer")
    assert (root / "etc/systemd/system/timers.target.wants/pyscale-backup.timer").is_symlink()
    (root / "var/backups/headscale/pyscale_20260101_030000").mkdir()
    db = root / "var/lib/headscale/db.sqlite"
    db.write_bytes(b"data")
    config = (root / "etc/headscale/config.yaml").read_bytes()
    _script("uninstall.sh", root)
    for gone in ("opt/pyscale", "opt/pyscale.prev", "usr/local/bin/pyscale", "etc/systemd/system/pyscale.service",
                 "etc/systemd/system/multi-user.target.wants/pyscale.service",
                 "etc/systemd/system/pyscale-backup.timer", "etc/systemd/system/pyscale-backup.service",
                 "etc/systemd/system/timers.target.wants/pyscale-backup.timer"):
        assert not (root / gone).exists() and not (root / gone).is_symlink(), gone
    assert db.read_bytes() == b"data" and (root / "etc/headscale/config.yaml").read_bytes() == config
    assert (root / "var/backups/headscale/pyscale_20260101_030000").is_dir()
    _account(root)


def test_uninstall_after_drop_in_hands_back_to_headscale(tmp_path: Path) -> None:
    root = _root(tmp_path)
    original = _headscale_install(root)
    _script("install.sh", root, "--drop-in")
    _script("uninstall.sh", root)
    assert not (root / "opt/pyscale").exists()
    for rel, data in original.items():
        assert (root / rel).read_bytes() == data, rel


def test_low_port_gets_only_net_bind_service(tmp_path: Path) -> None:
    root = _root(tmp_path)
    _script("install.sh", root)
    dropin = root / "etc/systemd/system/pyscale.service.d/10-low-ports.conf"
    assert not dropin.exists()
    config = root / "etc/headscale/config.yaml"
    config.write_text(config.read_text().replace("listen_addr: 0.0.0.0:8080", "listen_addr: 0.0.0.0:443"))
    _script("install.sh", root)
    text = dropin.read_text()
    assert "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n" in text
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE\n" in text
    assert "443" in text


def test_refuses_a_python_hidden_by_protecthome(tmp_path: Path) -> None:
    root = _root(tmp_path)
    res = subprocess.run(["sh", str(DEPLOY / "install.sh"), "--root", str(root), "--python", "/root/python3"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "ProtectHome" in res.stderr
    assert not (root / "opt/pyscale").exists()
