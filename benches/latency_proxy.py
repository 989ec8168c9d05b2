#!/usr/bin/env python3
"""A TCP proxy that puts a wide-area link between a client and a server on 127.0.0.1 (issue 19).

`netem` is not available on these machines, and an evacuation's source and destination are tens
of milliseconds apart: there, request concurrency and pipelining decide everything. This proxy
listens on 127.0.0.1, forwards every connection to one upstream HOST:PORT, and delivers every
byte --delay-ms after it arrived, in each direction (a round trip costs 2 x delay). python3
stdlib only (asyncio); no per-request work beyond moving bytes.

What it models:
  - latency: a fixed one-way delay per direction, for every byte (a TCP connect through it
    costs one round trip too: the upstream is dialled only after the delay);
  - a shared link (--mbit): all connections together, per direction, carry at most that many
    megabits per second (a token bucket; bursts up to 64 KiB);
  - a window (--window): each connection holds at most that many bytes in flight per
    direction, as TCP's receive window does: one connection alone then carries at most
    window / delay per second, so many connections are needed to fill a long fat link.
What it does not model: loss, reordering, jitter, slow start and congestion control (the
client's TCP sees a peer on 127.0.0.1, so its own window opens at once), TLS.

The first line on stdout is `listening on 127.0.0.1:PORT` (with --port 0 the OS picks it).

  python3 benches/latency_proxy.py --upstream 127.0.0.1:8333 --delay-ms 40 --port 0
"""

import argparse
import asyncio
import collections
import sys
import time

READ = 256 * 1024


class Link:
    """One direction's shared bandwidth: a token bucket in bytes (none: unlimited)."""

    def __init__(self, mbit):
        self.rate = mbit * 1_000_000 / 8 if mbit else None
        self.burst = 64 * 1024
        self.tokens = self.burst
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, n):
        if self.rate is None:
            return
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= min(n, self.burst):
                    self.tokens -= n
                    return
                await asyncio.sleep((min(n, self.burst) - self.tokens) / self.rate)


async def pump(reader, writer, delay, window, link):
    """Moves bytes from reader to writer, each delivered `delay` seconds after it arrived, with
    at most `window` bytes held at once."""
    queue = collections.deque()
    held = 0
    arrived = asyncio.Event()
    room = asyncio.Event()
    room.set()

    async def take_in():
        nonlocal held
        while True:
            await room.wait()
            try:
                data = await reader.read(READ)
            except (ConnectionError, OSError):
                data = b""
            queue.append((time.monotonic() + delay, data))
            held += len(data)
            if held >= window:
                room.clear()
            arrived.set()
            if not data:
                return

    async def give_out():
        nonlocal held
        while True:
            while not queue:
                arrived.clear()
                await arrived.wait()
            due, data = queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                try:
                    writer.write_eof()
                except (OSError, RuntimeError):
                    pass
                return
            await link.take(len(data))
            writer.write(data)
            try:
                await writer.drain()
            except (ConnectionError, OSError):
                return
            held -= len(data)
            if held < window:
                room.set()

    reading = asyncio.ensure_future(take_in())
    try:
        await give_out()
    finally:
        reading.cancel()


async def handle(client_r, client_w, args, up_link, down_link):
    delay = args.delay_ms / 1000
    host, port = args.upstream.rsplit(":", 1)
    # The client's SYN travels to the far side and the answer back before anything flows.
    await asyncio.sleep(delay)
    try:
        server_r, server_w = await asyncio.open_connection(host, int(port))
    except OSError:
        client_w.close()
        return
    await asyncio.sleep(delay)
    try:
        await asyncio.gather(
            pump(client_r, server_w, delay, args.window, up_link),
            pump(server_r, client_w, delay, args.window, down_link),
        )
    finally:
        for w in (client_w, server_w):
            try:
                w.close()
            except OSError:
                pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the real server")
    ap.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    ap.add_argument("--delay-ms", type=float, required=True, help="one-way delay, each direction")
    ap.add_argument("--mbit", type=float, default=None, help="shared link capacity per direction, Mbit/s")
    ap.add_argument("--window", type=int, default=4 << 20, help="bytes in flight per connection and direction")
    args = ap.parse_args()
    up_link, down_link = Link(args.mbit), Link(args.mbit)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args, up_link, down_link), "127.0.0.1", args.port
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
