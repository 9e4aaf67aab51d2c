"""`python -m derp`: a standalone DERP relay + STUN server, like Tailscale's derper.

Runs in the foreground (systemd Type=simple), logs to stderr, stops cleanly on SIGINT/SIGTERM.
Examples:
    python -m derp -a 127.0.0.1:3340 --stun-port 3478 --derpmap-hostname 127.0.0.1
    python -m derp -a :443 --certfile cert.pem --keyfile key.pem --mesh-psk-file psk --mesh-with b.example:443
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

import nacl.utils

from . import stun
from .mesh import MeshLink
from .server import DerpServer, Limits, VerifyClient
from .standalone import HttpFront, one_region_map

log = logging.getLogger("derp")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m derp", description="DERP relay and STUN server")
    p.add_argument("-a", "--addr", default=":3340", help="listen address host:port (default :3340)")
    p.add_argument("--certfile", help="TLS certificate (PEM); serve TLS when given with --keyfile")
    p.add_argument("--keyfile", help="TLS private key (PEM)")
    p.add_argument("--stun-port", type=int, default=3478, help="UDP STUN port on the same host; -1 disables")
    p.add_argument("-c", "--key-file", default="derper.key",
                   help="JSON file holding the relay's private key; created when missing")
    p.add_argument("--verify-client-url", help="POST DERPAdmitClientRequest JSON here to admit each client")
    p.add_argument("--verify-client-url-fail-open", action=argparse.BooleanOptionalAction, default=True,
                   help="admit clients when the verify URL is unreachable (derper default: yes)")
    p.add_argument("--mesh-psk-file", help="file with the 64-hex-char mesh key shared by a region's relays")
    p.add_argument("--mesh-with", default="", help="comma-separated host[:port] or URLs of the other relays")
    p.add_argument("--mesh-insecure", action="store_true", help="skip TLS checks of mesh peers")
    p.add_argument("--max-connections", type=int, default=Limits.max_connections)
    p.add_argument("--send-queue-bytes", type=int, default=Limits.send_queue_bytes)
    p.add_argument("--rate-limit-bytes", type=int, default=0, help="per-client bytes/s (0 = unlimited)")
    p.add_argument("--rate-limit-burst", type=int, default=0)
    p.add_argument("--idle-timeout", type=float, default=0.0)
    p.add_argument("--stats-interval", type=float, default=60.0, help="seconds between stats logs; 0=off")
    g = p.add_argument_group("one-region DERP map served at /derpmap (for clients pointed at this relay)")
    g.add_argument("--derpmap-hostname", help="HostName of the node; enables /derpmap")
    g.add_argument("--derpmap-ipv4", help="node IPv4 (default: hostname if IPv4)")
    g.add_argument("--region-id", type=int, default=900)
    g.add_argument("--region-code", default="pyderp")
    g.add_argument("--region-name", default="pyscale DERP")
    g.add_argument("--print-derpmap", action="store_true", help="print the DERP map JSON on stdout at start")
    p.add_argument("--no-uvloop", action="store_true", help="stock asyncio loop even with uvloop")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def split_addr(addr: str, default_port: int = 3340) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not _:
        host, port = addr, str(default_port)
    return host.strip("[]") or "0.0.0.0", int(port)


def load_or_create_key(path: Path) -> bytes:
    """derper's config format: {"PrivateKey": "privkey:<64 hex>"}; written 0600 when missing."""
    if path.exists():
        text = json.loads(path.read_text())["PrivateKey"]
        return bytes.fromhex(text.removeprefix("privkey:"))
    key = nacl.utils.random(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"PrivateKey": "privkey:" + key.hex()}, f)
    return key


def read_mesh_key(path: str) -> bytes:
    key = bytes.fromhex(Path(path).read_text().strip())
    if len(key) != 32:
        raise SystemExit("mesh key must be 64 hex characters")
    return key


def url_verifier(url: str, fail_open: bool) -> VerifyClient:
    """--verify-client-url: POST tailcfg.DERPAdmitClientRequest, expect 200 + {"Allow": true}."""

    def check(key: bytes) -> bool:
        body = json.dumps({"NodePublic": "nodekey:" + key.hex(), "Source": "0.0.0.0"}).encode()
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                if resp.status != 200:
                    return False
                return bool(json.loads(resp.read(4096)).get("Allow"))
        except urllib.error.HTTPError:
            return False
        except (OSError, ValueError) as exc:
            log.warning("verify-client-url %s unreachable: %r (fail open: %s)", url, exc, fail_open)
            return fail_open

    async def verify(key: bytes) -> bool:
        return await asyncio.to_thread(check, key)

    return verify


def build_derpmap(args: argparse.Namespace, derp_port: int, stun_port: int) -> dict[str, object] | None:
    if not args.derpmap_hostname:
        return None
    host = args.derpmap_hostname
    ipv4 = args.derpmap_ipv4 or (host if host.replace(".", "").isdigit() else None)
    return one_region_map(region_id=args.region_id, region_code=args.region_code,
                          region_name=args.region_name, host=host, derp_port=derp_port,
                          stun_port=stun_port, ipv4=ipv4, ipv6="none" if ipv4 else None)


async def run(args: argparse.Namespace) -> None:
    host, port = split_addr(args.addr)
    limits = Limits(max_connections=args.max_connections, send_queue_bytes=args.send_queue_bytes,
                    rate_bytes_per_second=args.rate_limit_bytes, rate_burst_bytes=args.rate_limit_burst,
                    idle_timeout=args.idle_timeout)
    verify = url_verifier(args.verify_client_url, args.verify_client_url_fail_open) \
        if args.verify_client_url else None
    mesh_key = read_mesh_key(args.mesh_psk_file) if args.mesh_psk_file else None
    server = DerpServer(load_or_create_key(Path(args.key_file)), verify_client=verify, mesh_key=mesh_key,
                        limits=limits)
    tls = None
    if args.certfile:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.certfile, args.keyfile)
    stun_transport, stun_proto, stun_port = None, None, -1
    if args.stun_port >= 0:
        stun_transport, stun_proto = await stun.start_stun(host, args.stun_port)
        stun_port = stun_transport.get_extra_info("sockname")[1]
    front = HttpFront(server, extra_stats=stun_proto.stats if stun_proto else None)
    listener = await asyncio.start_server(front.handle, host, port, ssl=tls, limit=64 << 10)
    derp_port = listener.sockets[0].getsockname()[1]
    derpmap = build_derpmap(args, derp_port, stun_port)  # needs the bound port when -a used port 0
    front.set_derpmap(derpmap)
    if args.print_derpmap and derpmap is not None:
        print(json.dumps(derpmap), flush=True)
    links = [MeshLink(server, u.strip(), ssl_context=_mesh_ssl(args)) for u in args.mesh_with.split(",")
             if u.strip()]
    for link in links:
        link.start()
    scheme = "https" if tls else "http"
    log.info("derp: serving %s://%s:%d/derp, stun udp %s, key %s, mesh peers %d", scheme, host, derp_port,
             stun_port, server.public_key.hex(), len(links))
    stats_task = server.start_stats_log(args.stats_interval, stun_proto.stats if stun_proto else None) \
        if args.stats_interval > 0 else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("derp: shutting down")
    if stats_task:
        stats_task.cancel()
    listener.close()
    await server.close()
    if stun_transport:
        stun_transport.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(listener.wait_closed(), 5)


def _mesh_ssl(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.mesh_insecure:
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.no_uvloop:
        try:
            import uvloop  # optional; faster event loop when installed

            uvloop.install()
        except ImportError:
            pass
    log.info("derp: event loop policy %s", type(asyncio.get_event_loop_policy()).__module__)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
