"""``pyscale doctor``: the runbook's troubleshooting checks, run for you, each with what to do.

Checks: config (every problem with file:line), permissions of the config/data dirs and key files,
database integrity and schema (read-only), the unix socket and the running server's health, listen
ports (bound by pyscale, or free for it), STUN answering a real binding request, the DERP map served,
and the clock. Nothing is changed; the exit code is non-zero when any check fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sqlite3
import stat
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pyscale.config import Config, ConfigReport
from pyscale.netaddr import probe_host_port

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        text = f"[{mark}] {self.check}: {self.detail}"
        return text + (f"\n       -> {self.fix}" if self.fix and not self.ok else "")


def check_config(report: ConfigReport) -> Iterator[Finding]:
    where = report.source_path or "the embedded default"
    if report.errors:
        for problem in report.errors:
            yield Finding("config", False, str(problem), "fix the key at that line, then `pyscale configtest`")
    else:
        yield Finding("config", True, f"{where} is valid ({len(report.warnings)} warning(s), "
                                      f"{len(report.mappings)} old key name(s) mapped)")


def check_permissions(cfg: Config) -> Iterator[Finding]:
    data_dir = Path(cfg.database.sqlite.path).parent
    if not os.access(data_dir, os.W_OK | os.X_OK):
        yield Finding("permissions", False, f"{data_dir} is not writable by uid {os.getuid()}",
                      f"run as the service user (sudo -u headscale ...) or `chown -R headscale: {data_dir}`")
    else:
        yield Finding("permissions", True, f"{data_dir} writable")
    for path in (cfg.noise.private_key_path, cfg.derp.server.private_key_path if cfg.derp.server.enabled else ""):
        if path and os.path.exists(path):
            mode = stat.S_IMODE(os.stat(path).st_mode)
            ok = not mode & 0o077
            yield Finding("permissions", ok, f"{path} mode {mode:04o}",
                          f"`chmod 600 {path}`: a private key must not be readable by others")


def check_database(cfg: Config) -> Iterator[Finding]:
    path = cfg.database.sqlite.path
    if not os.path.exists(path):
        yield Finding("database", True, f"{path} does not exist yet (created on first start)")
        return
    try:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, timeout=5)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
            fk = conn.execute("PRAGMA foreign_key_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        yield Finding("database", False, f"{path}: {exc}", "restore the last backup: `pyscale restore PATH`")
        return
    yield Finding("database", result == "ok", f"integrity_check: {result}",
                  "restore the last backup (`pyscale restore PATH`); keep the damaged file for analysis")
    yield Finding("database", not fk, f"foreign_key_check: {len(fk)} violation(s)",
                  "restore the last backup; do not edit the database by hand")
    from pyscale.db.prepare import inspect_file

    insp = inspect_file(path)
    yield Finding("database", insp.action != "refuse", f"schema: {insp.action} ({insp.version}) {insp.detail}",
                  "this file is from a newer Headscale: run that version, or restore a v0.27.1 backup")


def _http_json(url: str) -> object:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=PROBE_TIMEOUT_S) as resp:
        return json.loads(resp.read() or b"null")


def check_server(cfg: Config) -> Iterator[Finding]:
    host, port = probe_host_port(cfg.listen_addr)
    base = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    try:
        health = _http_json(base + "/health")
    except (OSError, ValueError) as exc:
        yield Finding("server", False, f"no answer on {cfg.listen_addr} ({exc})",
                      "start it (`systemctl start pyscale` or `pyscale serve`); if it fails: "
                      "`journalctl -u pyscale -n 100` and `pyscale configtest`")
        yield from _ports_free(cfg)
        return
    yield Finding("server", health == {"status": "pass"}, f"/health on {cfg.listen_addr}: {health}",
                  "the database does not answer: see the database checks above")
    sock_ok = os.path.exists(cfg.unix_socket) and os.access(cfg.unix_socket, os.W_OK)
    yield Finding("socket", sock_ok, f"{cfg.unix_socket} {'usable' if sock_ok else 'missing or not writable'}",
                  "run the CLI as the service user or root; check unix_socket_permission")
    try:
        derpmap = _http_json(base + "/derpmap/default")
        regions = sorted((derpmap or {}).get("Regions", {}) if isinstance(derpmap, dict) else [])
        yield Finding("derp map", bool(regions), f"regions {regions or 'none'}",
                      "enable derp.server (embedded relay) or set derp.urls/derp.paths: clients need a relay")
    except (OSError, ValueError) as exc:
        yield Finding("derp map", False, str(exc), "check the server log for DERP map warnings")
    if cfg.derp.server.enabled:
        yield check_stun(cfg.derp.server.stun_listen_addr)


def _ports_free(cfg: Config) -> Iterator[Finding]:
    for key, addr in (("listen_addr", cfg.listen_addr), ("metrics_listen_addr", cfg.metrics_listen_addr)):
        if not addr:
            continue
        host, port = probe_host_port(addr)
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no owner
            try:
                s.bind((host, port))
            except OSError as exc:
                yield Finding("ports", False, f"{key} {addr} is taken by another process ({exc.strerror})",
                              f"find it with `ss -tlpn | grep :{port}` and stop it, or change {key}")
            else:
                yield Finding("ports", True, f"{key} {addr} is free")


def check_stun(addr: str) -> Finding:
    from derp.stun import binding_request, parse_binding_response

    host, port = probe_host_port(addr)
    txid = secrets.token_bytes(12)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(PROBE_TIMEOUT_S)
        try:
            s.sendto(binding_request(txid), (host, port))
            got, ip, mapped = parse_binding_response(s.recv(2048))
        except (OSError, ValueError) as exc:
            return Finding("stun", False, f"no binding response from {addr} ({exc})",
                           f"check `ss -ulpn | grep {port}` and the firewall for udp/{port}")
    return Finding("stun", got == txid, f"{addr} answered: you are {ip}:{mapped}", "stale or foreign STUN answer")


def check_clock() -> Finding:
    if shutil.which("timedatectl") is None:
        return Finding("clock", True, "timedatectl not available; not checked")
    try:
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return Finding("clock", True, "timedatectl did not answer; not checked")
    if not out:
        return Finding("clock", True, "no time synchronisation status; not checked")
    return Finding("clock", out == "yes", f"NTP synchronized: {out}",
                   "enable time sync (`timedatectl set-ntp true`): node and key expiry compare clocks")


def run(report: ConfigReport, emit: Callable[[Finding], None]) -> bool:
    findings: list[Finding] = []

    def add(items: Iterator[Finding] | Finding) -> None:
        for f in [items] if isinstance(items, Finding) else items:
            findings.append(f)
            emit(f)

    add(check_config(report))
    if not report.errors:
        cfg = report.config
        add(check_permissions(cfg))
        add(check_database(cfg))
        add(check_server(cfg))
    add(check_clock())
    return all(f.ok for f in findings)
