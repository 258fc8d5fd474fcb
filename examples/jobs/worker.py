"""The worker: claims one pending job at a time (an atomic UPDATE, so two workers never take
the same one), does it, and marks it done. SIGTERM lets it finish the job at hand first."""

import os
import signal
import sqlite3
import time

stopping = False


def stop(*_):
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, stop)
db = sqlite3.connect(os.environ["DATABASE"], timeout=5, isolation_level=None)
# A job claimed by a worker that was killed is pending again.
db.execute("update jobs set status = 'pending' where status = 'working'")
print("worker up", flush=True)
while not stopping:
    row = db.execute(
        "update jobs set status = 'working' where id = "
        "(select id from jobs where status = 'pending' order by id limit 1) "
        "returning id, payload"
    ).fetchone()
    if row is None:
        time.sleep(0.1)
        continue
    job, payload = row
    db.execute(
        "update jobs set status = 'done', result = ? where id = ?", (payload.upper(), job)
    )
    print(f"done job {job}", flush=True)
print("worker stopped", flush=True)
