"""In-process relay for tests: DerpServer behind the standalone HTTP front on 127.0.0.1:<free port>."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from derp.server import DerpServer
from derp.standalone import HttpFront


@dataclass
class Relay:
    server: DerpServer
    url: str
    port: int


@contextlib.asynccontextmanager
async def running_relay(**kw: Any) -> AsyncIterator[Relay]:
    server = DerpServer(kw.pop("private_key", None) or os.urandom(32), **kw)
    front = HttpFront(server)
    listener = await asyncio.start_server(front.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield Relay(server, f"http://127.0.0.1:{port}/derp", port)
    finally:
        listener.close()
        await server.close()
        await listener.wait_closed()


async def eventually(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for cond() to hold (polling the event loop), or fail after a generous deadline."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.01)
