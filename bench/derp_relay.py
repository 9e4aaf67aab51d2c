"""DERP relay benchmark over loopback: N sender->receiver pairs at a frame size, vs a raw byte forwarder.

    python bench/derp_relay.py --pairs 1 --size 1300 --seconds 5 [--json]
    python bench/derp_relay.py --stun --seconds 5
    python bench/derp_relay.py --hot-path [--profile]

The relay under test is the real standalone server (`python -m derp`) in its own process (one core); the
load generator runs here. Every sender writes batches of SendPacket frames and keeps at most --window bytes
in flight (closed loop, so a relay that keeps up loses nothing); every receiver counts bytes. The first
frame of each batch carries a send timestamp, giving latency samples (send -> receive, same clock). The
same byte stream then goes through a raw asyncio forwarder (its own process, copies bytes from the
sender's socket to the receiver's socket without parsing) for the comparison the ratio is taken against.

Prints frames/s, Gbit/s of packet payload, p50/p99 latency, drops (from the relay's /metrics), the relay
process's CPU use and the ratio. --hot-path measures the relay's Python cost per frame in-process (CPU
time, no sockets). Numbers only; nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from derp import frames, stun  # noqa: E402
from derp.client import DerpClient  # noqa: E402

HEADER = frames.FRAME_HEADER_LEN + frames.KEY_LEN  # SendPacket and RecvPacket frames have equal length
TS = struct.Struct(">d")
READ_SIZE = 256 << 10


@dataclass
class PairStats:
    sent: int = 0
    received: int = 0
    latencies: list[float] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


# --- load generator -------------------------------------------------------------------------------------


async def sender(writer: asyncio.StreamWriter, dst: bytes, size: int, batch: int, window: int,
                 st: PairStats, stop: asyncio.Event) -> None:
    frame_len = HEADER + size
    template = bytearray(frames.send_packet(dst, bytes(size)) * batch)
    while not stop.is_set():
        if st.sent - st.received > window:
            st.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(st.wake.wait(), 1.0)
            continue
        TS.pack_into(template, HEADER, time.perf_counter())
        writer.write(template)
        st.sent += len(template)
        if writer.transport.get_write_buffer_size() > window:
            await writer.drain()
        else:
            await asyncio.sleep(0)
    del frame_len


async def receiver(reader: asyncio.StreamReader, initial: bytes, size: int, batch: int, st: PairStats,
                   stop: asyncio.Event) -> None:
    frame_len = HEADER + size
    batch_len = frame_len * batch
    pos = 0  # byte offset of the stream start of `buf`
    buf = initial
    while not stop.is_set():
        if buf:
            end = pos + len(buf)
            # timestamps sit in the first frame of each batch, at stream offsets k*batch_len + HEADER
            k = -(-(pos - HEADER) // batch_len) if pos > HEADER else 0
            now = time.perf_counter()
            while k * batch_len + HEADER + 8 <= end:
                off = k * batch_len + HEADER - pos
                if off >= 0:
                    st.latencies.append(now - TS.unpack_from(buf, off)[0])
                k += 1
            st.received += len(buf)
            st.wake.set()
            keep = min(len(buf), HEADER + 8)  # a timestamp may straddle two reads
            pos, buf = end - keep, buf[-keep:]
            st.received -= keep
        data = await reader.read(READ_SIZE)
        if not data:
            return
        buf = buf + data if buf else data


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), to see whether the server was the bottleneck."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_load(connect_pair, pairs: int, size: int, seconds: float, window: int, batch: int,
                   server_pid: int, drops=None) -> dict[str, float]:
    stop = asyncio.Event()
    stats = [PairStats() for _ in range(pairs)]
    tasks = []
    for i in range(pairs):
        (sr, sw), (rr, rw, initial), dst = await connect_pair(i)
        tasks.append(asyncio.create_task(receiver(rr, initial, size, batch, stats[i], stop)))
        tasks.append(asyncio.create_task(sender(sw, dst, size, batch, window, stats[i], stop)))
    await asyncio.sleep(min(1.0, seconds / 4))  # warm-up
    base = [s.received for s in stats]
    for s in stats:
        s.latencies.clear()
    drops0 = await asyncio.to_thread(drops) if drops else {}
    t0, cpu0 = time.perf_counter(), cpu_seconds(server_pid)
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - t0
    server_cpu = (cpu_seconds(server_pid) - cpu0) / elapsed
    drops1 = await asyncio.to_thread(drops) if drops else {}
    got = sum(s.received for s in stats) - sum(base)
    lat = sorted(x for s in stats for x in s.latencies)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    frames_s = got / (HEADER + size) / elapsed
    extra: dict[str, object] = {}
    if drops:
        queue_max = drops1.pop("max_send_queue_bytes", 0)
        drops0.pop("max_send_queue_bytes", 0)
        extra = {"drops_during_run": {k: v - drops0.get(k, 0) for k, v in drops1.items()},
                 "max_send_queue_bytes_at_end": queue_max}
    return {
        "frames_per_s": round(frames_s),
        "gbit_per_s": round(frames_s * size * 8 / 1e9, 3),
        "mbyte_per_s": round(got / elapsed / 1e6, 1),
        "p50_ms": round(statistics.median(lat) * 1e3, 3) if lat else -1,
        "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1e3, 3) if lat else -1,
        "latency_samples": len(lat),
        "server_cpu_fraction": round(server_cpu, 2),  # 1.0 = one core fully busy
        # throughput per CPU-second the server actually got: its one-core capacity when the machine is shared
        "gbit_per_server_cpu_s": round(frames_s * size * 8 / 1e9 / server_cpu, 3) if server_cpu else -1,
        **extra,
    }


# --- relay and raw forwarder processes -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def _metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^headscale_derp_(\S+) (\S+)$", text, re.M)}


def _drops(port: int) -> dict[str, int]:
    """Drop counters by reason, plus the largest send queue right now (a gauge, not a delta)."""
    m = _metrics(port)
    out = {k.replace("packets_dropped_by_reason_total", "").strip("{}") or "total": int(v)
           for k, v in m.items() if k.startswith("packets_dropped")}
    out["max_send_queue_bytes"] = int(m.get("send_queue_bytes_max_current", 0))
    return out


async def bench_relay(args: argparse.Namespace, port: int, pid: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/derp"

    async def connect_pair(i: int):
        rx = await DerpClient.connect(url, os.urandom(32))
        tx = await DerpClient.connect(url, os.urandom(32))
        rr, rw, initial = rx.detach()
        sr, sw, _ = tx.detach()
        return (sr, sw), (rr, rw, initial), rx.public_key

    return await run_load(connect_pair, args.pairs, args.size, args.seconds, args.window, args.batch, pid,
                          drops=lambda: _drops(port))


async def bench_raw(args: argparse.Namespace, port: int, pid: int) -> dict[str, float]:
    async def connect_pair(i: int):
        pair_id = os.urandom(32)
        rr, rw = await asyncio.open_connection("127.0.0.1", port, limit=READ_SIZE)
        rw.write(b"R" + pair_id)
        sr, sw = await asyncio.open_connection("127.0.0.1", port, limit=READ_SIZE)
        sw.write(b"S" + pair_id)
        return (sr, sw), (rr, rw, b""), os.urandom(32)

    return await run_load(connect_pair, args.pairs, args.size, args.seconds, args.window, args.batch, pid)


async def serve_raw() -> None:
    """The raw forwarder: pairs a sender and a receiver by id, then copies bytes with no parsing."""
    waiting: dict[bytes, asyncio.StreamWriter] = {}
    senders: dict[bytes, asyncio.StreamReader] = {}

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            if writer.transport.get_write_buffer_size() > (1 << 20):
                await writer.drain()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = await reader.readexactly(33)
        role, pair_id = hello[:1], hello[1:]
        if role == b"R":
            waiting[pair_id] = writer
            if pair_id in senders:
                await pipe(senders.pop(pair_id), writer)
            else:
                await asyncio.Event().wait()
        else:
            while pair_id not in waiting:
                await asyncio.sleep(0.01)
            await pipe(reader, waiting.pop(pair_id))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=READ_SIZE)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


# --- hot path in-process (no sockets): parse -> look up peer -> enqueue -> batched write ------------------


class _NullTransport:
    def __init__(self) -> None:
        self.bytes = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.bytes += len(data)

    def writelines(self, parts: list[bytes]) -> None:
        self.bytes += len(b"".join(parts))  # what stock asyncio does; uvloop would writev instead

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class _NullWriter:
    def __init__(self) -> None:
        self.transport = _NullTransport()

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default

    def close(self) -> None:
        self.transport.close()

    async def wait_closed(self) -> None:
        return None


async def bench_hot_path(size: int, seconds: float, profile: bool) -> dict[str, float]:
    """CPU cost per relayed frame of the relay's Python code alone, fed 256 KiB chunks like socket reads."""
    from derp import protocol
    from derp.server import DerpServer

    server = DerpServer(os.urandom(32))
    clients, tasks, readers, writers = [], [], [], []
    for _ in range(2):
        conn = protocol.ClientConnection(os.urandom(32))
        conn.receive_data(frames.server_key(server.public_key))
        reader, writer = asyncio.StreamReader(), _NullWriter()
        reader.feed_data(conn.data_to_send())
        tasks.append(asyncio.create_task(server.serve_upgraded(reader, writer)))  # type: ignore[arg-type]
        while conn.public_key not in server._active:
            await asyncio.sleep(0)
        clients.append(server._active[conn.public_key])
        readers.append(reader)
        writers.append(writer)
    src, dst = clients
    stream = frames.send_packet(dst.key, bytes(size)) * (4 * READ_SIZE // (HEADER + size))
    chunks = [stream[i : i + READ_SIZE] for i in range(0, len(stream), READ_SIZE)]
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    n0 = server.counters["packets_relayed_total"]
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    while time.perf_counter() - t0 < seconds:
        for chunk in chunks:
            server._on_data(src, chunk)
    cpu = time.process_time() - cpu0
    if prof is not None:
        import pstats

        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(10)
    n = server.counters["packets_relayed_total"] - n0
    for reader in readers:
        reader.feed_eof()
    await asyncio.gather(*tasks)
    return {"hot_path_ns_per_frame": round(cpu / n * 1e9), "hot_path_frames_per_cpu_s": round(n / cpu),
            "hot_path_gbit_per_cpu_s": round(n / cpu * size * 8 / 1e9, 2),
            "relayed_bytes": writers[1].transport.bytes}


# --- STUN ------------------------------------------------------------------------------------------------


def bench_stun(port: int, seconds: float, window: int = 64) -> dict[str, float]:
    """Blocking UDP client: keeps `window` requests in flight, counts answers per second."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(1.0)
    request = stun.binding_request(b"\x01" * 12)
    answered = lost = 0
    for _ in range(window):
        sock.send(request)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        try:
            sock.recv(2048)
            answered += 1
        except TimeoutError:
            lost += window
            for _ in range(window):
                sock.send(request)
            continue
        sock.send(request)
    sock.close()
    return {"stun_requests_per_s": round(answered / seconds), "stun_timeouts": lost}


def _stun_worker(port: int, seconds: float, out: object) -> None:
    out.put(bench_stun(port, seconds))  # type: ignore[attr-defined]


def bench_stun_parallel(port: int, seconds: float, clients: int) -> dict[str, float]:
    """Several client processes (one Python client cannot saturate the server)."""
    import multiprocessing

    queue: multiprocessing.Queue[dict[str, float]] = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_stun_worker, args=(port, seconds, queue))
               for _ in range(clients)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=seconds + 30) for _ in workers]
    for w in workers:
        w.join(timeout=10)
    return {"stun_requests_per_s": sum(r["stun_requests_per_s"] for r in results),
            "stun_timeouts": sum(r["stun_timeouts"] for r in results), "stun_clients": clients}


# --- main ------------------------------------------------------------------------------------------------


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=1)
    p.add_argument("--size", type=int, default=1300, help="packet size in bytes (frame = size + 37)")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--window", type=int, default=256 << 10, help="max bytes in flight per pair")
    p.add_argument("--batch", type=int, default=32, help="frames per sender write")
    p.add_argument("--stun", action="store_true", help="benchmark STUN binding requests instead")
    p.add_argument("--no-uvloop", action="store_true", help="run the relay on the stock asyncio loop")
    p.add_argument("--stun-clients", type=int, default=2, help="STUN client processes")
    p.add_argument("--hot-path", action="store_true", help="in-process CPU cost per frame (no sockets)")
    p.add_argument("--profile", action="store_true", help="with --hot-path: print a cProfile summary")
    p.add_argument("--no-raw", action="store_true", help="skip the raw forwarder comparison")
    p.add_argument("--json", action="store_true")
    p.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_raw:
        if not args.no_uvloop and _has_uvloop():
            import uvloop

            uvloop.install()  # same loop as the relay, for a fair comparison
        asyncio.run(serve_raw())
        return
    if args.hot_path:
        res = asyncio.run(bench_hot_path(args.size, args.seconds, args.profile))
        print(json.dumps(res) if args.json else "\n".join(f"{k}: {v}" for k, v in res.items()))
        return
    result: dict[str, object] = {"pairs": args.pairs, "size": args.size, "seconds": args.seconds,
                                 "python": sys.version.split()[0],
                                 "relay_uvloop": not args.no_uvloop and _has_uvloop()}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port, stun_port = _free_port(), _free_port()
        with tempfile.TemporaryDirectory() as tmp:
            relay = subprocess.Popen(
                [sys.executable, "-m", "derp", "-a", f"127.0.0.1:{port}", "--stun-port",
                 str(stun_port if args.stun else -1), "-c", f"{tmp}/k", "--stats-interval", "0"]
                + (["--no-uvloop"] if args.no_uvloop else []),
                cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stderr=subprocess.DEVNULL)
            procs.append(relay)
            _wait_http(f"http://127.0.0.1:{port}/derp/probe", relay)
            if args.stun:
                cpu0, t0 = cpu_seconds(relay.pid), time.perf_counter()
                result |= bench_stun_parallel(stun_port, args.seconds, args.stun_clients)
                cpu = (cpu_seconds(relay.pid) - cpu0) / (time.perf_counter() - t0)
                result["server_cpu_fraction"] = round(cpu, 2)
            else:
                result["relay"] = relay_res = asyncio.run(bench_relay(args, port, relay.pid))
                result["relay_drops_incl_teardown"] = _drops(port)
                if not args.no_raw:
                    raw = subprocess.Popen([sys.executable, __file__, "--serve-raw"]
                                           + (["--no-uvloop"] if args.no_uvloop else []),
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                    procs.append(raw)
                    assert raw.stdout is not None
                    raw_port = int(raw.stdout.readline())
                    result["raw"] = raw_res = asyncio.run(bench_raw(args, raw_port, raw.pid))
                    result["ratio"] = round(relay_res["frames_per_s"] / max(1, raw_res["frames_per_s"]), 3)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
