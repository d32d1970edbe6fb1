#!/usr/bin/env python3
"""A TCP proxy that adds a fixed one-way delay to every byte in both directions,
like `tc netem delay` on the path (used where the kernel has no netem).

usage: latency-proxy.py LISTEN_PORT TARGET_PORT DELAY_MS [COUNT_FILE]
Bytes are forwarded as a delay line (each chunk leaves DELAY_MS after it
arrived), so throughput is not capped by the delay, only round trips are.
With COUNT_FILE, the HTTP requests seen from clients are counted by method
(request lines: `GET /…`) and the counts rewritten there as JSON after each
one, so a test or benchmark can count round trips instead of timing them;
`bytes_to_clients` counts what the server sent back (rewritten every MiB)."""
import asyncio
import json
import os
import re
import sys
import time

COUNTS = {}
REQUEST_LINE = re.compile(rb"(?:^|\r\n)(GET|PUT|HEAD|POST|DELETE) /")


def count(tail, data, count_file):
    """Counts request lines in `data` (with the last bytes of the stream
    before it, so a line split across reads is seen once); returns the new
    tail."""
    if not count_file:
        return b""
    buf = tail + data
    found = [m for m in REQUEST_LINE.finditer(buf) if m.end() > len(tail)]
    for m in found:
        method = m.group(1).decode()
        COUNTS[method] = COUNTS.get(method, 0) + 1
    if found:
        write_counts(count_file)
    return buf[-16:]


def count_down(n, count_file):
    """Adds n bytes sent to clients; rewritten with the counts every MiB."""
    before = COUNTS.get("bytes_to_clients", 0)
    COUNTS["bytes_to_clients"] = before + n
    if count_file and (before >> 20) != ((before + n) >> 20):
        write_counts(count_file)


def write_counts(count_file):
    tmp = count_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(COUNTS, f)
    os.replace(tmp, count_file)


async def pipe(reader, writer, delay, count_file=None, down=None):
    q = asyncio.Queue()
    tail = b""

    async def drain():
        while True:
            due, data = await q.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except OSError:
            pass

    task = asyncio.create_task(drain())
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            tail = count(tail, data, count_file)
            if down:
                count_down(len(data), down)
            q.put_nowait((time.monotonic() + delay, data))
    except OSError:
        pass
    q.put_nowait((0, None))
    try:
        await task
    except OSError:
        pass


async def main():
    listen, target, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000
    count_file = sys.argv[4] if len(sys.argv) > 4 else None
    if count_file:
        with open(count_file, "w") as f:
            json.dump(COUNTS, f)

    async def handle(cr, cw):
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            cw.close()
            return
        await asyncio.gather(
            pipe(cr, sw, delay, count_file), pipe(sr, cw, delay, down=count_file)
        )
        for w in (sw, cw):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen, limit=1 << 20)
    async with server:
        await server.serve_forever()


asyncio.run(main())
