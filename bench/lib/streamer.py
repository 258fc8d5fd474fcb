#!/usr/bin/env python3
"""Streaming upstreams for the websocket-echo and sse scenarios.

Started by lib/bench.py next to the upstream nginx (pinned to the load core);
the upstream nginx forwards /ws and /sse here, so every proxy under test still
has exactly one upstream, 127.0.0.1:9000.

- ws://127.0.0.1:9002/ws : WebSocket echo, the `websockets` library from
  Debian (python3-websockets): every message is sent back as is.
- http://127.0.0.1:9003/sse : a text/event-stream of EVENTS events, one every
  GAP_MS ms, each `data: <CLOCK_MONOTONIC ns at write>`; the first event is
  written right after the headers, in a separate write. Chunked, keep-alive.
  The client (lib/loadgen.py) compares the timestamps with its own
  CLOCK_MONOTONIC: the time an event spends inside the proxy.
"""
from __future__ import annotations

import asyncio
import sys
import time

import websockets

EVENTS = 5
GAP_MS = 10


async def echo(ws, path=None):  # `path` for websockets < 10.1
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def sse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                return
            if not head.startswith(b"GET /sse"):
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                continue
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0)
            for i in range(EVENTS):
                if i:
                    await asyncio.sleep(GAP_MS / 1000)
                data = b"data: %d\n\n" % time.monotonic_ns()
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(ws_port: int, sse_port: int) -> None:
    ws_server = await websockets.serve(echo, "127.0.0.1", ws_port, compression=None,
                                       max_queue=64, ping_interval=None)
    sse_server = await asyncio.start_server(sse, "127.0.0.1", sse_port, backlog=1024)
    print(f"streamer: ws echo on :{ws_port}, sse on :{sse_port}", flush=True)
    async with sse_server:
        await asyncio.Future()
    ws_server.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
