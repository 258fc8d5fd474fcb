"""The FastAPI app the protocol tests run behind zoo: a WebSocket echo, an SSE stream whose
end the test controls, and an upload counter that streams the body."""

import asyncio

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, StreamingResponse

app = FastAPI()
released = asyncio.Event()


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
