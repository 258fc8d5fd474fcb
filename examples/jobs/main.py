"""The API: POST /jobs enqueues a job, GET /jobs lists them with their status."""

import os
import sqlite3

from fastapi import FastAPI

app = FastAPI()


def connect():
    return sqlite3.connect(os.environ["DATABASE"], timeout=5)


@app.post("/jobs")
async def enqueue(payload: str):
    with connect() as db:
        cursor = db.execute("insert into jobs (payload) values (?)", (payload,))
    return {"id": cursor.lastrowid}


@app.get("/jobs")
async def jobs():
    with connect() as db:
        rows = db.execute("select id, payload, status, result from jobs order by id").fetchall()
    return [dict(zip(("id", "payload", "status", "result"), row)) for row in rows]
