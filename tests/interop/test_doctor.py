"""`pyscale doctor` against a real running server (all green, STUN answered, DERP map served), then the
failures the runbook's troubleshooting section hunts for by hand, each with what to do."""

from __future__ import annotations

import os
import socket

from tests.interop.harness import PyscaleServer


def test_doctor_green_then_red(server: PyscaleServer) -> None:
    res = server.cli("doctor", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "[ok  ] database: integrity_check: ok" in out
    assert f"[ok  ] stun: 127.0.0.1:{server.stun_port} answered" in out
    assert "[ok  ] derp map: regions ['999']" in out and "All checks passed." in out

    os.chmod(server.root / "noise_private.key", 0o644)
    server.stop()
    with socket.socket() as squatter:  # another process holds the listen port
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", server.port))
        squatter.listen()
        res = server.cli("doctor", check=False)
    assert res.returncode == 1
    assert "[FAIL] permissions:" in res.stdout and "chmod 600" in res.stdout
    assert "[FAIL] server: no answer" in res.stdout
    assert f"[FAIL] ports: listen_addr 127.0.0.1:{server.port} is taken" in res.stdout
    assert f"ss -tlpn | grep :{server.port}" in res.stdout
