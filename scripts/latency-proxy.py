#!/usr/bin/env python3
"""A TCP proxy that adds a fixed one-way delay to every byte in both directions,
like `tc netem delay` on the path (used where the kernel has no netem).

usage: latency-proxy.py LISTEN_PORT TARGET_PORT DELAY_MS
Bytes are forwarded as a delay line (each chunk leaves DELAY_MS after it
arrived), so throughput is not capped by the delay, only round trips are."""
import asyncio
import sys
import time


async def pipe(reader, writer, delay):
    q = asyncio.Queue()

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

    async def handle(cr, cw):
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, sw, delay), pipe(sr, cw, delay))
        for w in (sw, cw):
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen, limit=1 << 20)
    async with server:
        await server.serve_forever()


asyncio.run(main())
