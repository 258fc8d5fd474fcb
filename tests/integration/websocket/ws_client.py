"""A real WebSocket client (the `websockets` package, sync API) against the echo endpoint:
prints one JSON object per case; the Rust test runs it directly and through zoo and compares
everything but the `seconds` fields. Every wait is bounded by `timeout`."""

import json
import sys
import time

from websockets.sync.client import connect

url = sys.argv[1]
results = []


def case(name, fn):
    started = time.monotonic()
    result = fn()
    results.append({"case": name, "result": result, "seconds": round(time.monotonic() - started, 4)})


def opened(**kwargs):
    return connect(url, open_timeout=10, close_timeout=10, max_size=None, **kwargs)


def echo_1mib():
    with opened() as ws:
        out = {}
        text = "zoo! " * (1 << 18)
        ws.send(text)
        out["text"] = ws.recv(timeout=10) == text
        data = bytes(i % 251 for i in range(1 << 20))
        ws.send(data)
        out["binary"] = ws.recv(timeout=10) == data
        out["extensions"] = ws.response.headers.get("Sec-WebSocket-Extensions")
        ws.close()
        out["close"] = [ws.close_code, ws.close_reason]
        return out


def many_small():
    # Batches of 10: the sync client buffers at most 16 incoming messages before it stops reading.
    with opened(compression=None) as ws:
        echoed = 0
        for start in range(0, 10_000, 10):
            batch = [f"message {i}" for i in range(start, start + 10)]
            for message in batch:
                ws.send(message)
            for message in batch:
                echoed += ws.recv(timeout=10) == message
        ws.close()
        return {"echoed_in_order": echoed, "close": [ws.close_code, ws.close_reason]}


def close_code(code, reason):
    def run():
        with opened() as ws:
            ws.send("hi")
            ws.recv(timeout=10)
            ws.close(code, reason)
            return [ws.close_code, ws.close_reason]

    return run


case("1 MiB echo, text and binary, compression negotiated", echo_1mib)
case("10,000 small messages", many_small)
case("close 1000", close_code(1000, "done"))
case("close 1001", close_code(1001, "going away"))
case("close 4000", close_code(4000, "app-defined"))
for line in results:
    print(json.dumps(line))
