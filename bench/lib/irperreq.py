#!/usr/bin/env python3
"""Instructions per proxied request, zoo vs nginx, under valgrind's callgrind.

Instruction counts do not depend on how busy the (shared, noisy) machine is,
so this is the regression guard's measure (bench/guard.sh) and the profile's
(bench/profile.sh). Standard library only.

For each proxy: start it under `valgrind --tool=callgrind --instr-atstart=no`,
send WARMUP requests, switch instrumentation on (callgrind_control -i on), send N
keep-alive `GET /small` requests on CONNS connections round-robin (one at a
time: deterministic), switch it off, stop the proxy; Ir / N is the cost of one
request through it (accept, parse, route, upstream pool, response, epoll...).
Everything the process does is counted: all threads, user space only (the
kernel's share is not in it).

The upstream is a private nginx on its own ports (not the benchmark's), so
this can run while nothing else is set up.
"""
from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
SMALL = "small-response-0123456789-0123456789-0123456789-0123456789-0123456789-0123456789-0123456789-0123456\n"

UPSTREAM_CONF = """
worker_processes 1; daemon off; master_process off; pid {d}/up.pid; error_log {d}/up-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off; keepalive_requests 10000000; keepalive_timeout 120s;
  client_body_temp_path {d}/t1; proxy_temp_path {d}/t2; fastcgi_temp_path {d}/t3;
  uwsgi_temp_path {d}/t4; scgi_temp_path {d}/t5;
  server {{ listen 127.0.0.1:{up};
    location = /small {{ default_type text/plain; return 200 "{small}"; }} }}
}}
"""

# The benchmark's nginx-proxy.conf settings for small requests, one worker, no master.
NGINX_CONF = """
worker_processes 1; daemon off; master_process off; pid {d}/px.pid; error_log {d}/px-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off; server_tokens off; tcp_nodelay on;
  keepalive_requests 10000000; keepalive_timeout 120s;
  client_body_temp_path {d}/u1; proxy_temp_path {d}/u2; fastcgi_temp_path {d}/u3;
  uwsgi_temp_path {d}/u4; scgi_temp_path {d}/u5;
  proxy_request_buffering off; client_body_buffer_size 128k;
  proxy_buffering off; proxy_buffer_size 64k; proxy_buffers 4 64k;
  upstream backend {{ server 127.0.0.1:{up}; keepalive 64; keepalive_requests 10000000; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                  proxy_set_header Connection ""; }} }}
}}
"""

ZOO_CONF = """
listen = "127.0.0.1:{port}"
grace = "1s"
[routes]
"/" = {{ proxy = "http://127.0.0.1:{up}" }}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early (code {proc.returncode})")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/small")
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status == 200 and body == SMALL.encode():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} not answering on {port} after {timeout}s")


def drive(port: int, n: int, conns: int) -> None:
    cs = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(conns)]
    for i in range(n):
        c = cs[i % conns]
        c.request("GET", "/small")
        r = c.getresponse()
        if r.status != 200 or r.read() != SMALL.encode():
            raise SystemExit(f"bad response through port {port}: {r.status}")
    for c in cs:
        c.close()


def measure(name: str, cmd: list[str], port: int, d: str, n: int, warmup: int,
            conns: int, keep: bool) -> dict:
    out = os.path.join(d, f"callgrind.{name}.out")
    vg = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
          f"--callgrind-out-file={out}", "--dump-line=yes"]
    if keep:
        vg += ["--dump-instr=no"]
    log = open(os.path.join(d, f"{name}.log"), "wb")
    # One CPU, as in the benchmark (and a 1-CPU container): tokio sizes its
    # worker pool from the affinity mask.
    pin = ["taskset", "-c", os.environ.get("IR_CPU", "0")] if shutil.which("taskset") else []
    p = subprocess.Popen(pin + vg + cmd, stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, cwd=d, start_new_session=True)
    try:
        wait_port(port, p, name)
        drive(port, warmup, conns)
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True,
                       stdout=subprocess.DEVNULL, timeout=30)
        drive(port, n, conns)
        subprocess.run(["callgrind_control", "-i", "off", str(p.pid)], check=True,
                       stdout=subprocess.DEVNULL, timeout=30)
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(10)
    total = 0
    files = [f for f in glob.glob(out + "*") if os.path.isfile(f)]
    for f in files:
        with open(f, errors="replace") as fh:
            # "summary:" can be 0 with --instr-atstart=no; "totals:" is the sum.
            total += max([int(m.group(1)) for m in
                          re.finditer(r"^(?:summary|totals):\s+(\d+)", fh.read(), re.M)],
                         default=0)
    return {"proxy": name, "ir_total": total, "requests": n, "ir_per_req": total / n,
            "files": files}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", required=True, help="path of the zoo binary")
    ap.add_argument("-n", type=int, default=2000, help="measured requests")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--keep", metavar="DIR", help="keep the callgrind files in DIR")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} missing: run bench/setup.sh")
    d = args.keep or tempfile.mkdtemp(prefix="zoo-ir-")
    os.makedirs(d, exist_ok=True)
    up, pz, pn = free_port(), free_port(), free_port()
    with open(os.path.join(d, "up.conf"), "w") as f:
        f.write(UPSTREAM_CONF.format(d=d, up=up, small=SMALL.replace("\n", "\\n")))
    upstream = subprocess.Popen(["nginx", "-p", d + "/", "-e", os.path.join(d, "up-error.log"),
                                 "-c", os.path.join(d, "up.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    results = []
    try:
        wait_port(up, upstream, "upstream nginx", 10)
        with open(os.path.join(d, "zoo.toml"), "w") as f:
            f.write(ZOO_CONF.format(port=pz, up=up))
        results.append(measure("zoo", [args.zoo, "--config", os.path.join(d, "zoo.toml"),
                                       "--log-level", "warn"],
                               pz, d, args.n, args.warmup, args.conns, bool(args.keep)))
        if not args.no_nginx:
            with open(os.path.join(d, "px.conf"), "w") as f:
                f.write(NGINX_CONF.format(d=d, up=up, port=pn))
            results.append(measure("nginx", ["nginx", "-p", d + "/", "-e",
                                             os.path.join(d, "px-error.log"),
                                             "-c", os.path.join(d, "px.conf")],
                                   pn, d, args.n, args.warmup, args.conns, bool(args.keep)))
    finally:
        upstream.terminate()
        upstream.wait(10)
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
    out = {r["proxy"]: round(r["ir_per_req"]) for r in results}
    if "nginx" in out and out["nginx"]:
        out["ratio"] = round(out["zoo"] / out["nginx"], 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
