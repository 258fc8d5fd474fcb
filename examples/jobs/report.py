"""The report: how many jobs are in each state."""

import os
import sqlite3

db = sqlite3.connect(os.environ["DATABASE"], timeout=5)
counts = dict(db.execute("select status, count(*) from jobs group by status").fetchall())
print(f"report: {counts}", flush=True)
