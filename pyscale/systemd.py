"""The service-manager side of ``Type=notify``: sd_notify(3) and the watchdog, pure stdlib.

systemd passes ``$NOTIFY_SOCKET`` (a unix datagram socket path, or ``@name`` for the abstract
namespace) and, with ``WatchdogSec=``, ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``: whom it is for).
We send ``READY=1`` once every listener is bound, ``RELOADING=1``/``READY=1`` around a reload,
``STOPPING=1`` when draining starts, and ``WATCHDOG=1`` from a task on the event loop every half
period, so a loop that hangs stops feeding the watchdog and systemd kills and restarts us.
Outside systemd (no ``$NOTIFY_SOCKET``) every call is a cheap no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

log = logging.getLogger("pyscale.systemd")

WATCHDOG_FEED_FRACTION = 0.5  # sd_watchdog_enabled(3): feed at half the period to absorb jitter


def notify(message: str) -> bool:
    """Send one sd_notify message (``KEY=VALUE`` lines); False when not run by a service manager."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Non-blocking: a manager that stops reading (full queue) must never stall the event loop.
            sock.setblocking(False)
            sock.sendto(message.encode(), target)
    except OSError as exc:  # the manager went away, its queue is full, or the socket is not ours to use
        log.warning("sd_notify to %s failed: %s", address, exc)
        return False
    return True


def ready(status: str = "") -> bool:
    return notify(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}" if status else "READY=1")


def reloading() -> bool:
    # MONOTONIC_USEC lets newer managers (Type=notify-reload) match the reload; older ones ignore it.
    return notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")


def stopping() -> bool:
    return notify("STOPPING=1")


def watchdog_interval() -> float | None:
    """Seconds between two ``WATCHDOG=1`` pings, or None when the watchdog is off or not for us."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = os.environ.get("WATCHDOG_PID", "")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1_000_000 * WATCHDOG_FEED_FRACTION


async def feed_watchdog(interval: float) -> None:
    """Ping forever from the event loop: if the loop stalls, the pings stop and systemd acts."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)


def start_watchdog() -> asyncio.Task[None] | None:
    interval = watchdog_interval()
    if interval is None or "NOTIFY_SOCKET" not in os.environ:
        return None
    log.info("feeding the systemd watchdog every %.1fs", interval)
    return asyncio.create_task(feed_watchdog(interval), name="systemd-watchdog")


async def stop_watchdog(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
