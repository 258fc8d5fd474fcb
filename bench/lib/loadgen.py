#!/usr/bin/env python3
"""Load generator for the scenarios wrk cannot drive (websocket-echo, sse).

Usage: loadgen.py ws|sse PORT CONNS SECONDS
Prints one `BENCHJSON {...}` line with the same keys as lua/report.lua, so
lib/bench.py treats it like wrk. Standard library only; bounded in time
(SECONDS, plus a 5 s timeout on every read).

ws:  CONNS WebSocket connections to /ws, each sending a 32-byte masked text
     frame and waiting for its echo, in a loop. requests = echoed messages;
     latencies = round trips.
sse: CONNS keep-alive connections, each requesting GET /sse in a loop and
     reading the whole stream (lib/streamer.py: 5 events, 10 ms apart).
     requests = streams; p50/p90/p99 = first-byte latency (request written ->
     first event's bytes read); ev_p50_us/ev_p99_us = event latency (the
     upstream's write timestamp -> read here; both CLOCK_MONOTONIC).
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time

TIMEOUT = 5.0
PAYLOAD = b"0123456789abcdef0123456789abcdef"   # 32 bytes


class Stats:
    def __init__(self):
        self.lat_ns: list[int] = []
        self.ev_ns: list[int] = []
        self.bytes = 0
        self.err = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}


def pct(xs: list[int], p: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] / 1000


def masked_frame(payload: bytes) -> bytes:
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + key + body


async def ws_conn(port: int, end: float, st: Stats) -> None:
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        st.err["connect"] += 1
        return
    try:
        key = base64.b64encode(os.urandom(16))
        w.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n" % (port, key))
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), TIMEOUT)
        if not head.startswith(b"HTTP/1.1 101"):
            st.err["status"] += 1
            return
        frame = masked_frame(PAYLOAD)
        while time.monotonic() < end:
            t0 = time.monotonic_ns()
            w.write(frame)
            hdr = await asyncio.wait_for(r.readexactly(2), TIMEOUT)
            n = hdr[1] & 0x7F
            if n == 126:
                n = int.from_bytes(await r.readexactly(2), "big")
            data = await asyncio.wait_for(r.readexactly(n), TIMEOUT)
            if hdr[0] & 0x0F != 1 or data != PAYLOAD:
                st.err["status"] += 1
                return
            st.lat_ns.append(time.monotonic_ns() - t0)
            st.bytes += 2 + n
    except asyncio.TimeoutError:
        st.err["timeout"] += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        st.err["read"] += 1
    finally:
        w.close()


async def sse_conn(port: int, end: float, st: Stats) -> None:
    r = w = None
    try:
        while time.monotonic() < end:
            if w is None:
                try:
                    r, w = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", port), TIMEOUT)
                except (OSError, asyncio.TimeoutError):
                    st.err["connect"] += 1
                    return
            t0 = time.monotonic_ns()
            w.write(b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                    b"Accept: text/event-stream\r\n\r\n" % port)
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), TIMEOUT)
            lines = head.decode("latin-1").lower().split("\r\n")
            if not lines[0].startswith("http/1.1 200"):
                st.err["status"] += 1
                return
            chunked = any(l.startswith("transfer-encoding:") and "chunked" in l for l in lines)
            close = any(l.startswith("connection:") and "close" in l for l in lines)
            first = True
            buf = b""
            while True:
                if chunked:
                    size_line = await asyncio.wait_for(r.readuntil(b"\r\n"), TIMEOUT)
                    size = int(size_line.split(b";")[0], 16)
                    data = await asyncio.wait_for(r.readexactly(size + 2), TIMEOUT)
                    data = data[:-2]
                    if size == 0:
                        break
                else:
                    data = await asyncio.wait_for(r.read(65536), TIMEOUT)
                    if not data:
                        close = True
                        break
                now = time.monotonic_ns()
                if first:
                    st.lat_ns.append(now - t0)
                    first = False
                st.bytes += len(data)
                buf += data
                while b"\n\n" in buf:
                    ev, buf = buf.split(b"\n\n", 1)
                    if ev.startswith(b"data: "):
                        st.ev_ns.append(now - int(ev[6:]))
            if close:
                w.close()
                r = w = None
    except asyncio.TimeoutError:
        st.err["timeout"] += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        st.err["read"] += 1
    finally:
        if w is not None:
            w.close()


async def main(mode: str, port: int, conns: int, seconds: float) -> None:
    st = Stats()
    start = time.monotonic()
    end = start + seconds
    fn = ws_conn if mode == "ws" else sse_conn
    await asyncio.wait_for(asyncio.gather(*(fn(port, end, st) for _ in range(conns))),
                           seconds + 3 * TIMEOUT)
    dur = time.monotonic() - start
    lat = st.lat_ns
    out = {
        "duration_us": dur * 1e6, "requests": len(lat), "bytes": st.bytes,
        "err_connect": st.err["connect"], "err_read": st.err["read"],
        "err_write": st.err["write"], "err_status": st.err["status"],
        "err_timeout": st.err["timeout"],
        "p50_us": pct(lat, 50), "p90_us": pct(lat, 90),
        "p99_us": pct(lat, 99), "max_us": (max(lat) / 1000) if lat else 0,
        "mean_us": (sum(lat) / len(lat) / 1000) if lat else 0,
    }
    if mode == "sse":
        out["ev_p50_us"] = pct(st.ev_ns, 50)
        out["ev_p99_us"] = pct(st.ev_ns, 99)
    print("BENCHJSON " + json.dumps(out), flush=True)


if __name__ == "__main__":
    m, p, c, s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    asyncio.run(main(m, p, c, s))
