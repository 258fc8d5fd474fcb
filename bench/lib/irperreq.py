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

`--scenario big` drives `GET /big` (a 1 MiB file) and `--scenario upload`
`POST /upload` with a 1 MiB body instead of `GET /small` (the benchmark's
big-1MiB and upload-1MiB requests; the upstream reads the whole upload before it
answers, as bench/conf/upstream-nginx.conf does). `--strace` runs the proxies
natively under `strace -f` for the measured requests instead of callgrind and
prints syscalls per request by name, bytes per read/write-like call, and the
minor page faults and CPU time per request (the CPU time is slowed down by
strace: compare only within one run). Kernel time is most of the CPU for 1 MiB
bodies, so both counts matter there. With `--parallel` (strace only) the CONNS
connections send their requests at the same time, each from its own thread,
like wrk -cCONNS: body chunks then pile up in the proxy as under load (read
sizes, buffer allocations, page faults), which one-at-a-time requests hide;
the counts are no longer exactly repeatable.

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
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
BODY = 1 << 20  # /big's and /upload's size, as in the benchmark
SMALL = "small-response-0123456789-0123456789-0123456789-0123456789-0123456789-0123456789-0123456789-0123456\n"

# The upstreams' one worker, no master, and http settings; NAME names its pid and error log.
UPSTREAM_HEAD = """
worker_processes 1; daemon off; master_process off; pid {d}/NAME.pid; error_log {d}/NAME-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off; keepalive_requests 10000000; keepalive_timeout 120s;
  client_body_temp_path {d}/t1; proxy_temp_path {d}/t2; fastcgi_temp_path {d}/t3;
  uwsgi_temp_path {d}/t4; scgi_temp_path {d}/t5;
"""

UPSTREAM_CONF = UPSTREAM_HEAD.replace("NAME", "up") + """  server {{ listen 127.0.0.1:{up};
    location = /small {{ default_type text/plain; return 200 "{small}"; }}
    location = /big {{ default_type application/octet-stream; sendfile on; tcp_nopush on;
                      alias {d}/big.bin; }}
    location = /upload {{ client_max_body_size 2m; client_body_buffer_size 2m;
                         proxy_pass http://127.0.0.1:{sink}; proxy_pass_request_body off;
                         proxy_set_header Content-Length ""; proxy_http_version 1.1;
                         proxy_set_header Connection "";
                         add_header X-Request-Length $request_length always; }} }}
  server {{ listen 127.0.0.1:{sink};
    location / {{ default_type text/plain; return 200 "ok\\n"; }} }}
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
  client_max_body_size 2m;
  upstream backend {{ server 127.0.0.1:{up}; keepalive 64; keepalive_requests 10000000; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                  proxy_set_header Connection ""; }} }}
}}
"""

ZOO_CONF = """
listen = "127.0.0.1:{port}"
grace = "1s"
{engine}
[routes]
"/" = {{ proxy = "http://127.0.0.1:{up}" }}
"""

# `--route app|replicas`: the same GET /small from an app zoo supervises, one instance or two
# balanced (issue 18's route), each a native nginx on its own port (only zoo runs under
# callgrind; its children run natively). zoo expands $PORT in the command.
ZOO_APP_CONF = """
listen = "127.0.0.1:{port}"
grace = "1s"
{engine}
[apps.up]
command = "nginx -p {d}/ -e {d}/app-$PORT-error.log -c {d}/app-$PORT.conf"
port = {ports}
replicas = {replicas}

[routes]
"/" = {{ app = "up" }}
"""

APP_CONF = UPSTREAM_HEAD.replace("NAME", "app-{up}") + """  server {{ listen 127.0.0.1:{up};
    location = /small {{ default_type text/plain; return 200 "{small}"; }} }}
}}
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


def drive(port: int, n: int, conns: int, scenario: str = "small", big: bytes = b"") -> None:
    cs = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(conns)]
    upload = b"u" * BODY if scenario == "upload" else b""
    for i in range(n):
        c = cs[i % conns]
        if scenario == "upload":
            c.request("POST", "/upload", body=upload,
                      headers={"Content-Type": "application/octet-stream"})
            r = c.getresponse()
            ok = (r.read() == b"ok\n"
                  and int(r.getheader("X-Request-Length") or 0) > BODY)
        elif scenario == "big":
            c.request("GET", "/big")
            r = c.getresponse()
            ok = r.read() == big
        else:
            c.request("GET", "/small")
            r = c.getresponse()
            ok = r.read() == SMALL.encode()
        if r.status != 200 or not ok:
            raise SystemExit(f"bad response through port {port}: {r.status}")
    for c in cs:
        c.close()


# "PID call(args) = ret", or "PID <... call resumed>...) = ret" when another thread's
# call came in between (its "<unfinished ...>" half has no result and is not counted).
def stop(p: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 60 s, unless it has already exited."""
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)


def drive_parallel(port: int, n: int, conns: int, scenario: str, big: bytes) -> None:
    """`drive` with each of the `conns` connections in its own thread, n/conns requests each."""
    errors: list[BaseException] = []

    def one(k: int) -> None:
        try:
            drive(port, k, 1, scenario, big)
        except BaseException as error:  # SystemExit too: reported by the caller
            errors.append(error)

    threads = [threading.Thread(target=one, args=(n // conns + (i < n % conns),))
               for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"through port {port}: {errors[0]}")


STRACE_LINE = re.compile(r"^(?:\d+\s+)?(?:<\.\.\. (\w+) resumed>|(\w+)\().*\)\s+=\s+(-?\d+)")
# Calls whose return value is a byte count moved between user space and a socket.
IO_CALLS = {"read", "recvfrom", "recvmsg", "readv", "write", "writev", "sendto", "sendmsg"}


def proc_counters(pid: int) -> tuple[int, int]:
    """Minor faults and utime+stime (ticks) of `pid`, all threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[7]), int(fields[11]) + int(fields[12])


def strace_measure(name: str, cmd: list[str], port: int, d: str, n: int, warmup: int,
                   conns: int, scenario: str, big: bytes, parallel: bool) -> dict:
    """Runs `cmd` natively and counts its syscalls over `n` requests with strace -f."""
    send = drive_parallel if parallel else drive
    out = os.path.join(d, f"strace.{name}.out")
    log = open(os.path.join(d, f"{name}.log"), "wb")
    pin = ["taskset", "-c", os.environ.get("IR_CPU", "0")] if shutil.which("taskset") else []
    p = subprocess.Popen(pin + cmd, stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, cwd=d, start_new_session=True)
    try:
        wait_port(port, p, name)
        send(port, warmup, conns, scenario, big)
        st = subprocess.Popen(["strace", "-f", "-qq", "-e", "signal=none", "-o", out,
                               "-p", str(p.pid)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(1)  # strace attaches to every thread
        flt0, cpu0 = proc_counters(p.pid)
        send(port, n, conns, scenario, big)
        flt1, cpu1 = proc_counters(p.pid)
        st.send_signal(signal.SIGINT)
        st.wait(30)
    finally:
        stop(p)
    calls: dict[str, int] = {}
    moved: dict[str, int] = {}
    with open(out, errors="replace") as fh:
        for line in fh:
            m = STRACE_LINE.match(line)
            if not m:
                continue
            call, ret = m.group(1) or m.group(2), int(m.group(3))
            calls[call] = calls.get(call, 0) + 1
            if call in IO_CALLS and ret > 0:
                moved[call] = moved.get(call, 0) + ret
    per = {c: round(k / n, 2) for c, k in sorted(calls.items(), key=lambda kv: -kv[1])}
    return {"proxy": name, "requests": n,
            "syscalls_per_req": round(sum(calls.values()) / n, 2),
            "per_req": per,
            "bytes_per_call": {c: round(moved[c] / calls[c]) for c in moved},
            "minflt_per_req": round((flt1 - flt0) / n, 1),
            "cpu_ms_per_req_under_strace": round((cpu1 - cpu0) * 10 / n, 3)}


def measure(name: str, cmd: list[str], port: int, d: str, n: int, warmup: int,
            conns: int, keep: bool, scenario: str = "small", big: bytes = b"") -> dict:
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
        drive(port, warmup, conns, scenario, big)
        subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], check=True,
                       stdout=subprocess.DEVNULL, timeout=30)
        drive(port, n, conns, scenario, big)
        subprocess.run(["callgrind_control", "-i", "off", str(p.pid)], check=True,
                       stdout=subprocess.DEVNULL, timeout=30)
    finally:
        stop(p)
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
    ap.add_argument("--scenario", choices=("small", "big", "upload"), default="small",
                    help="GET /small (default), GET /big (1 MiB) or POST /upload (1 MiB)")
    ap.add_argument("--strace", action="store_true",
                    help="syscalls per request under strace -f instead of callgrind")
    ap.add_argument("--parallel", action="store_true",
                    help="with --strace: the connections send at the same time (like wrk)")
    ap.add_argument("-n", type=int, help="measured requests (2000; 200 with big bodies)")
    ap.add_argument("--warmup", type=int, help="(200; 20 with big bodies)")
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--engine", choices=("hyper", "zoo"),
                    help="zoo's HTTP/1.1 engine (default: the config default)")
    ap.add_argument("--keep", metavar="DIR", help="keep the callgrind files in DIR")
    ap.add_argument("--route", choices=("proxy", "app", "replicas"), default="proxy",
                    help="zoo's route: a `proxy` to the upstream (default), an app zoo runs, "
                         "or an app with replicas = 2 (small requests only; nginx's row "
                         "stays its proxy to one upstream)")
    args = ap.parse_args()
    if args.route != "proxy" and args.scenario != "small":
        ap.error("--route app|replicas serves GET /small only")
    if args.parallel and not args.strace:
        ap.error("--parallel needs --strace (callgrind counts are kept one request at a time)")
    bodies = args.scenario != "small"
    if args.n is None:
        args.n = 200 if bodies else 2000
    if args.warmup is None:
        args.warmup = 20 if bodies else 200
    tools = ("strace", "nginx") if args.strace else ("valgrind", "callgrind_control", "nginx")
    for tool in tools:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} missing: run bench/setup.sh")
    d = args.keep or tempfile.mkdtemp(prefix="zoo-ir-")
    os.makedirs(d, exist_ok=True)
    up, pz, pn, sink = free_port(), free_port(), free_port(), free_port()
    big = bytes((i * 7 + 3) & 0xFF for i in range(BODY)) if args.scenario == "big" else b""
    with open(os.path.join(d, "big.bin"), "wb") as f:
        f.write(big or b"\0" * BODY)
    with open(os.path.join(d, "up.conf"), "w") as f:
        f.write(UPSTREAM_CONF.format(d=d, up=up, sink=sink,
                                     small=SMALL.replace("\n", "\\n")))
    upstream = subprocess.Popen(["nginx", "-p", d + "/", "-e", os.path.join(d, "up-error.log"),
                                 "-c", os.path.join(d, "up.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    results = []
    try:
        wait_port(up, upstream, "upstream nginx", 10)
        with open(os.path.join(d, "zoo.toml"), "w") as f:
            engine = f'engine = "{args.engine}"' if args.engine else ""
            if args.route == "proxy":
                f.write(ZOO_CONF.format(port=pz, up=up, engine=engine))
            else:
                replicas = 2 if args.route == "replicas" else 1
                ports = [free_port() for _ in range(replicas)]
                for app_port in ports:
                    with open(os.path.join(d, f"app-{app_port}.conf"), "w") as conf:
                        conf.write(APP_CONF.format(d=d, up=app_port,
                                                   small=SMALL.replace("\n", "\\n")))
                f.write(ZOO_APP_CONF.format(port=pz, engine=engine, d=d, replicas=replicas,
                                            ports=ports if replicas > 1 else ports[0]))
        def run(name: str, cmd: list[str], port: int) -> dict:
            if args.strace:
                return strace_measure(name, cmd, port, d, args.n, args.warmup, args.conns,
                                      args.scenario, big, args.parallel)
            return measure(name, cmd, port, d, args.n, args.warmup, args.conns,
                           bool(args.keep), args.scenario, big)
        results.append(run("zoo", [args.zoo, "--config", os.path.join(d, "zoo.toml"),
                                   "--log-level", "warn"], pz))
        if not args.no_nginx:
            with open(os.path.join(d, "px.conf"), "w") as f:
                f.write(NGINX_CONF.format(d=d, up=up, port=pn))
            results.append(run("nginx", ["nginx", "-p", d + "/", "-e",
                                         os.path.join(d, "px-error.log"),
                                         "-c", os.path.join(d, "px.conf")], pn))
    finally:
        upstream.terminate()
        upstream.wait(10)
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
    if args.strace:
        for r in results:
            print(json.dumps(r))
        out = {r["proxy"]: r["syscalls_per_req"] for r in results}
        if "nginx" in out and out["nginx"]:
            out["ratio"] = round(out["zoo"] / out["nginx"], 3)
        print(json.dumps(out))
        return 0
    out = {r["proxy"]: round(r["ir_per_req"]) for r in results}
    if "nginx" in out and out["nginx"]:
        out["ratio"] = round(out["zoo"] / out["nginx"], 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
