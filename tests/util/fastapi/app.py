"""The FastAPI app the protocol tests run behind zoo: a WebSocket echo, an SSE stream whose
end the test controls, an SSE stream of timestamped events at a fixed spacing, an upload
counter that streams the body, a download of N deterministic bytes, and the page (with a place
to post its results) that the headless Chromium test loads."""

import asyncio
import time
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, PlainTextResponse, StreamingResponse

app = FastAPI()
released = asyncio.Event()
# What each run of the browser page posted, by its `run` name.
browser_results = {}


@app.get("/ping")
async def ping():
    return PlainTextResponse("pong")


@app.websocket("/ws")
async def echo(socket: WebSocket):
    await socket.accept()
    try:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await socket.send_text(message["text"])
            else:
                await socket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return


@app.get("/sse")
async def sse():
    async def events():
        yield "data: first\n\n"
        # The stream cannot end before the test has seen the first event and released it.
        await released.wait()
        yield "data: last\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@app.post("/release")
async def release():
    released.set()
    return PlainTextResponse("released")


@app.post("/upload")
async def upload(request: Request):
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
    return PlainTextResponse(str(total))


@app.get("/sse/timed")
async def sse_timed(count: int = 20, interval_ms: int = 50):
    """`count` events, event i written at (i + 1) * interval after the request, each carrying
    the wall-clock time (CLOCK_REALTIME, shared with the test process) at which it is yielded."""

    async def events():
        start = time.monotonic()
        for i in range(count):
            delay = start + (i + 1) * interval_ms / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield f"id: {i}\ndata: {time.time_ns()}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@app.get("/bytes")
async def download(n: int):
    """`n` bytes, byte i being i % 251, streamed in 64 KiB pieces."""
    pattern = bytes(i % 251 for i in range(251 * 263))

    async def pieces():
        sent = 0
        while sent < n:
            size = min(65536, n - sent)
            offset = sent % 251
            yield pattern[offset : offset + size]
            sent += size

    return StreamingResponse(pieces(), media_type="application/octet-stream")


@app.get("/browser")
async def browser_page():
    return HTMLResponse(Path(__file__).with_name("ws_page.html").read_text())


@app.post("/browser/result")
async def post_browser_result(run: str, request: Request):
    browser_results[run] = (await request.body()).decode()
    return PlainTextResponse("stored")


@app.get("/browser/result")
async def get_browser_result(run: str):
    if run not in browser_results:
        raise HTTPException(status_code=404, detail=f"no result for run {run!r} yet")
    return PlainTextResponse(browser_results[run])
