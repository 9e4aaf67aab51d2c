"""Composition root: config -> database -> State -> listeners -> signals.

``App.start`` brings everything up in dependency order and returns once every listener is
bound (the moment to report readiness); ``App.stop`` drains: map streams are closed so clients
reconnect to the next instance at once, then the database is closed cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pyscale import __version__, derpmap, keyfile
from pyscale.config import Config
from pyscale.control.http1 import Request, Response, serve_connection
from pyscale.control.machine import MachineHandlers
from pyscale.control.routes import Router, RouterDeps
from pyscale.db import Database
from pyscale.mapper.build import MapContext, Mapper
from pyscale.mapper.dns import build_dns_config
from pyscale.netaddr import split_host_port
from pyscale.policy import PolicyError
from pyscale.state.events import FullUpdate
from pyscale.state.ipam import IPAllocator
from pyscale.state.model import Node
from pyscale.state.policystate import PolicyState
from pyscale.state.registration import Registrar
from pyscale.state.store import State

log = logging.getLogger("pyscale")

EXPIRY_CHECK_INTERVAL_S = 5.0
DERP_STATS_INTERVAL_S = 60.0
# Config fields a live reload cannot apply (bound sockets, open files, loaded keys).
RESTART_ONLY_KEYS = ("server_url", "listen_addr", "metrics_listen_addr", "unix_socket", "noise", "database",
                     "prefixes")


class App:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.db: Database | None = None
        self.state: State | None = None
        self.registrar: Registrar | None = None
        self.mapper: Mapper | None = None
        self.servers: list[asyncio.AbstractServer] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.connections: set[asyncio.Task[Any]] = set()
        self.derp_server: Any = None
        self.stun_transport: Any = None
        self.listen_port = 0
        self._derpmap: dict[str, Any] = {"Regions": {}}
        self.policy: PolicyState

    # ---- start-up ------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.cfg
        noise_key = keyfile.load_or_create(cfg.noise.private_key_path)
        self.db = await Database.open(cfg.database.sqlite.path,
                                      write_ahead_log=cfg.database.sqlite.write_ahead_log,
                                      wal_autocheckpoint=cfg.database.sqlite.wal_autocheckpoint)
        ipam = IPAllocator(cfg.prefixes.v4, cfg.prefixes.v6, cfg.prefixes.allocation)
        self.state = state = await State.load(self.db, ipam, cfg.ephemeral_node_inactivity_timeout)
        self.registrar = Registrar(state, cfg.server_url, cfg.tuning.register_cache_expiration)
        self.policy = PolicyState(state)
        self.policy.load(*await self._policy_source())
        await self._start_derp()
        self._derpmap = await self._build_derpmap()
        self.mapper = Mapper(state, self._map_context())
        handlers = MachineHandlers(state, self.registrar, self.mapper)
        deps = RouterDeps(noise_key=noise_key, noise_handler=handlers.handle, health=self.db.ping,
                          known_node_key=lambda k: state.node_by_node_key(k) is not None,
                          derpmap=lambda: self._derpmap, derp=self._derp_route(), server_url=cfg.server_url)
        from pyscale.api.rest import RestApi

        api = RestApi(state, self.registrar, self.mapper, policy_mode=cfg.policy.mode, policy_path=cfg.policy.path)
        api.service.apply_policy = self.set_policy
        api.service.policy_in_force = lambda: self.policy.text
        api.service.may_have_tag = self._may_have_tag
        deps_tcp = RouterDeps(**{**deps.__dict__, "api": api.authenticated})
        deps_unix = RouterDeps(**{**deps.__dict__, "api": api.trusted})
        await self._listen_tcp(Router(deps_tcp))
        await self._listen_unix(Router(deps_unix, trusted=True))
        await self._listen_metrics()
        self.tasks.append(asyncio.create_task(self._expiry_loop()))
        log.info("pyscale %s ready: server_url=%s listen=%s unix_socket=%s database=%s", __version__,
                 cfg.server_url, cfg.listen_addr, cfg.unix_socket, cfg.database.sqlite.path)

    def _map_context(self) -> MapContext:
        cfg = self.cfg
        prefixes = [p for p in (cfg.prefixes.v4, cfg.prefixes.v6) if p is not None]
        dns = build_dns_config(
            magic_dns=cfg.dns.magic_dns, base_domain=cfg.dns.base_domain,
            override_local_dns=cfg.dns.override_local_dns, global_servers=cfg.dns.nameservers.global_,
            split=cfg.dns.nameservers.split, search_domains=cfg.dns.search_domains,
            extra_records=cfg.dns.extra_records, prefixes=prefixes)
        return MapContext(domain=urlsplit(cfg.server_url).hostname or "", base_domain=cfg.dns.base_domain,
                          dns_config=dns, derp_map=lambda: self._derpmap,
                          disable_logtail=not cfg.logtail.enabled,
                          randomize_client_port=cfg.randomize_client_port, policy=self.policy)

    async def _policy_source(self) -> tuple[str, str]:
        """(text, source name) of the configured policy: a file, or the newest database row."""
        cfg = self.cfg
        if cfg.policy.mode == "database":
            assert self.state is not None
            return (await self.state.policy_text())[0] or "", "database"
        if not cfg.policy.path:
            return "", "<no policy>"
        with open(cfg.policy.path, encoding="utf-8") as fh:
            return fh.read(), cfg.policy.path

    async def reload_policy(self, *, announce: bool = True) -> bool:
        """SIGHUP / file change: load the policy again; a bad one is refused and the old one keeps serving.

        ``announce=False`` when the caller sends the one full update that covers this change too."""
        try:
            self.policy.load(*await self._policy_source())
        except (OSError, PolicyError) as exc:
            log.error("policy reload refused, the previous policy stays in force: %s", exc)
            return False
        if announce and self.state is not None:
            self.state.bus.publish(FullUpdate("policy changed"))
        return True

    async def set_policy(self, text: str) -> datetime:
        """``policy set`` (database mode): validate over the live topology, store, then switch.

        Raises PolicyError (nothing stored, the old policy keeps serving)."""
        self.policy.check(text, "database")
        assert self.state is not None
        updated = await self.state.set_policy_text(text)  # publishes the full update...
        self.policy.load(text, "database")  # ...which map sessions build only after this returns
        return updated

    def _may_have_tag(self, node: Node, tag: str) -> bool:
        """tagOwners: may this node's user own ``tag`` under the policy in force?"""
        policy = self.policy.policy
        user = self.state.users.get(node.user_id or -1) if self.state is not None else None
        return policy is not None and user is not None and policy.may_own_tag(tag, user.name, user.email)

    async def _build_derpmap(self) -> dict[str, Any]:
        cfg = self.cfg
        sources: list[dict[str, Any] | None] = []
        for url in cfg.derp.urls:
            sources.append(await asyncio.to_thread(derpmap.fetch_url, url))
        sources += [derpmap.load_path(p) for p in cfg.derp.paths]
        embedded = None
        server = cfg.derp.server
        if server.enabled and server.automatically_add_embedded_derp_region:
            embedded = derpmap.embedded_region(
                server_url=cfg.server_url, region_id=server.region_id, region_code=server.region_code,
                region_name=server.region_name, stun_listen_addr=self._stun_addr(), ipv4=server.ipv4,
                ipv6=server.ipv6)
        merged = derpmap.merge(sources, embedded)
        if not merged["Regions"]:
            log.warning("the DERP map is empty: clients will have no relay (configure derp.server or derp.urls)")
        return merged

    def _stun_addr(self) -> str:
        if self.stun_transport is not None:
            host, port = self.stun_transport.get_extra_info("sockname")[:2]
            return f"{host}:{port}"
        return self.cfg.derp.server.stun_listen_addr

    async def _start_derp(self) -> None:
        server = self.cfg.derp.server
        if not server.enabled:
            return
        try:
            from derp.server import DerpServer
            from derp.stun import start_stun
        except ImportError:  # relay not built into this install
            log.warning("derp.server.enabled is set but the derp package is unavailable")
            return
        key = keyfile.load_or_create(server.private_key_path)
        state = self.state
        assert state is not None

        async def verify(raw: bytes) -> bool:
            from pyscale.keys import NodePublic

            return state.node_by_node_key(NodePublic(raw)) is not None

        self.derp_server = DerpServer(key.raw, verify_client=verify if server.verify_clients else None)
        host, port = split_host_port(server.stun_listen_addr)
        self.stun_transport, stun = await start_stun(host, port)
        # The periodic DERP/STUN figures line operators grep for (next to the /metrics export).
        self.tasks.append(self.derp_server.start_stats_log(DERP_STATS_INTERVAL_S, extra=stun.stats))

    def _derp_route(self) -> Callable[[Request], Awaitable[Response]] | None:
        if self.derp_server is None:
            return None
        from pyscale.control.derproute import DerpRoute

        route: Callable[[Request], Awaitable[Response]] = DerpRoute(self.derp_server)
        return route

    async def _listen_tcp(self, router: Router) -> None:
        host, port = split_host_port(self.cfg.listen_addr)
        server = await asyncio.start_server(self._connection_cb(router), host, port, limit=64 * 1024)
        self.listen_port = server.sockets[0].getsockname()[1]
        self.servers.append(server)

    async def _listen_metrics(self) -> None:
        if not self.cfg.metrics_listen_addr:
            return
        from pyscale.metrics import MetricsRoute, build_registry

        assert self.state is not None
        derp_stats = self.derp_server.stats if self.derp_server is not None else None
        route = MetricsRoute(build_registry(self.state, derp_stats))
        host, port = split_host_port(self.cfg.metrics_listen_addr, "127.0.0.1")
        self.servers.append(await asyncio.start_server(self._connection_cb(route), host, port))

    async def _listen_unix(self, router: Router) -> None:
        path = self.cfg.unix_socket
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        server = await asyncio.start_unix_server(self._connection_cb(router), path, limit=64 * 1024)
        os.chmod(path, self.cfg.unix_socket_permission or 0o770)
        self.servers.append(server)

    def _connection_cb(
        self, router: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self.connections.add(task)
            try:
                await serve_connection(reader, writer, router)
            finally:
                self.connections.discard(task)

        return on_connection

    async def _expiry_loop(self) -> None:
        """Tell peers when a node's key expiry passes (Headscale checks every 5 s)."""
        from pyscale.state.events import KeyExpiryChanged
        from pyscale.state.model import utcnow

        assert self.state is not None
        last = utcnow()
        while True:
            await asyncio.sleep(EXPIRY_CHECK_INTERVAL_S)
            now = utcnow()
            for node in list(self.state.nodes.values()):
                if node.expiry is not None and last < node.expiry <= now:
                    self.state.bus.publish(KeyExpiryChanged(node.id))
            last = now

    # ---- live reload (SIGHUP / systemctl reload) --------------------------------------------

    async def reload(self, new_cfg: Config | None = None) -> bool:
        """Apply what can change live (DERP map, DNS, policy) without dropping map streams.

        The new state is built completely before anything is swapped, so a failure leaves the old
        state serving; keys that need a restart (listeners, database, keys) are only logged.
        """
        old_cfg = self.cfg
        self.cfg = _live_part(new_cfg or old_cfg, old_cfg)
        try:
            derp_map = await self._build_derpmap()
            ctx = self._map_context()
        except Exception:
            self.cfg = old_cfg
            log.exception("reload refused: the running configuration stays in force")
            return False
        self._derpmap = derp_map
        if self.mapper is not None:
            self.mapper.reconfigure(dns_config=ctx.dns_config, base_domain=ctx.base_domain)
        log.info("reloaded: DERP map (%d regions) and DNS configuration", len(derp_map["Regions"]))
        await self.reload_policy(announce=False)  # logs and keeps the old policy when the new one is bad
        if self.state is not None:  # one full map per node covers the DERP map, DNS and policy together
            self.state.bus.publish(FullUpdate("configuration reloaded"))
        return True

    # ---- shutdown ------------------------------------------------------------------------

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for task in self.tasks:
            task.cancel()
        if self.registrar is not None:
            self.registrar.close()
        if self.state is not None:
            self.state.close()
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.tasks, *self.connections, return_exceptions=True)
        if self.derp_server is not None:
            await self.derp_server.close()
        if self.stun_transport is not None:
            self.stun_transport.close()
        if self.db is not None:
            await self.db.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.cfg.unix_socket)
        log.info("pyscale stopped")


async def serve(cfg: Config, ready: Callable[[App], None] | None = None,
                reload_config: Callable[[], Config] | None = None) -> None:
    """Run until SIGTERM/SIGINT; SIGHUP re-reads the config through ``reload_config`` and reloads."""
    from pyscale import systemd

    app = App(cfg)
    await app.start()
    systemd.ready(f"serving on {cfg.listen_addr}")
    watchdog = systemd.start_watchdog()
    if ready is not None:
        ready(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()
    loop.add_signal_handler(signal.SIGHUP, lambda: _spawn(reloads, _reload(app, reload_config)))
    try:
        await stop.wait()
    finally:
        systemd.stopping()
        log.info("shutting down")
        loop.remove_signal_handler(signal.SIGHUP)
        await systemd.stop_watchdog(watchdog)
        await app.stop()


def _live_part(new: Config, running: Config) -> Config:
    """``new`` with every restart-only setting kept as it runs (bound sockets, open files, loaded keys)."""
    kept = {name: getattr(running, name) for name in RESTART_ONLY_KEYS}
    kept["derp"] = dataclasses.replace(new.derp, server=running.derp.server)  # the relay and STUN keep running
    changed = [name for name in RESTART_ONLY_KEYS if getattr(new, name) != getattr(running, name)]
    changed += ["derp.server"] if new.derp.server != running.derp.server else []
    for name in changed:
        log.warning("reload: %s changed; it takes effect at the next restart", name)
    return dataclasses.replace(new, **kept)


def _spawn(tasks: set[asyncio.Task[None]], coro: Awaitable[None]) -> None:
    task: asyncio.Task[None] = asyncio.ensure_future(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _reload(app: App, reload_config: Callable[[], Config] | None) -> None:
    from pyscale import systemd

    systemd.reloading()
    try:
        new_cfg = await asyncio.to_thread(reload_config) if reload_config is not None else None
    except Exception as exc:  # a bad file: refuse it; DERP sources and policy are re-read under the old one
        log.error("reload refused, the running configuration stays in force: %s", exc)
        new_cfg = None
    try:
        await app.reload(new_cfg)
    finally:
        systemd.ready()
