# One instance of a replicated app: answers "PID REPLICA" on every path; the instance whose
# ZOO_REPLICA is SLOW_REPLICA takes 50 ms over /slow.
import asyncio
import os

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()
REPLICA = os.environ["ZOO_REPLICA"]
SLOW = os.environ.get("SLOW_REPLICA") == REPLICA


@app.get("/{path:path}")
async def whoami(path: str):
    if SLOW and path == "slow":
        await asyncio.sleep(0.05)
    return PlainTextResponse(f"{os.getpid()} {REPLICA}\n")
