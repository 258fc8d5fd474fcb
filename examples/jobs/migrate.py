"""The migration: creates the queue table (idempotent, like `alembic upgrade head`)."""

import os
import sqlite3

db = sqlite3.connect(os.environ["DATABASE"])
db.execute(
    "create table if not exists jobs ("
    " id integer primary key, payload text not null,"
    " status text not null default 'pending', result text)"
)
db.commit()
print("schema ready", flush=True)
