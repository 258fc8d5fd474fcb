#!/usr/bin/env python3
"""Side-by-side HTTP reverse-proxy benchmark. Entry point: ../run.sh.

Every proxy forwards to the SAME upstream (an nginx on 127.0.0.1:9000 and
[::1]:9000). Scenarios x proxies are measured with wrk, alternated in rounds
(the proxy order rotates each round), and summarised as medians over rounds.
Standard library only. See ../README.md for the meaning of every column.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
BUILD = os.environ.get("BENCH_BUILD_DIR", "/tmp/bench-build")
RUN = os.path.join(BUILD, "run")
CONF = os.environ.get("BENCH_CONF_DIR", os.path.join(BENCH, "conf"))   # config templates
DATA = os.path.join(BUILD, "data")
UPSTREAM_PORT = 9000
SINK_PORT = 9001
UPSTREAM = f"127.0.0.1:{UPSTREAM_PORT}"
CLK_TCK = os.sysconf("SC_CLK_TCK")
BIG_SIZE = 1 << 20
UPLOAD_SIZE = 1 << 20
SMALL_SIZE = 100

SCENARIOS = [
    {"name": "small-keepalive", "path": "/small", "conns": 50, "headers": [],
     "lua": None, "desc": "GET /small (100 B body), keep-alive, wrk -t1 -c50"},
    {"name": "big-1MiB", "path": "/big", "conns": 8, "headers": [],
     "lua": None, "desc": "GET /big (1 MiB body), keep-alive, wrk -t1 -c8"},
    {"name": "small-close", "path": "/small", "conns": 16,
     "headers": ["Connection: close"], "lua": None,
     "desc": "GET /small, new TCP connection per request "
             "(-H 'Connection: close'), wrk -t1 -c16"},
    {"name": "upload-1MiB", "path": "/upload", "conns": 8, "headers": [],
     "lua": "upload.lua", "desc": "POST /upload with a 1 MiB body, wrk -t1 -c8"},
    # Not wrk: lib/loadgen.py (same BENCHJSON line). The upstream nginx relays
    # /ws and /sse to lib/streamer.py, so every proxy keeps one upstream.
    {"name": "websocket-echo", "path": "/ws", "conns": 50, "headers": [],
     "lua": None, "driver": "ws",
     "desc": "WebSocket echo, 50 connections, each sends a 32-byte message and waits "
             "for its echo, in a loop (lib/loadgen.py); 'req/s' = echoed messages/s, "
             "p50/p99 = round trip"},
    {"name": "sse", "path": "/sse", "conns": 16, "headers": [],
     "lua": None, "driver": "sse",
     "desc": "GET /sse (text/event-stream, 5 events 10 ms apart), 16 keep-alive "
             "connections in a loop (lib/loadgen.py); 'req/s' = streams/s, "
             "p50/p99 = first-byte latency (request -> first event); "
             "event latency = upstream write -> client read"},
]
# Scenario families kept in files of their own (each: SCENARIOS, TARGETS, prepare(data_dir),
# check(port, proxy, data_dir) -> {scenario: why not}, report(summary) -> markdown).
import scenarios_static  # noqa: E402  static files and compression (issue 15)
SCENARIO_MODULES = [scenarios_static]
for _module in SCENARIO_MODULES:
    SCENARIOS += _module.SCENARIOS
STREAMER_WS_PORT = 9002
STREAMER_SSE_PORT = 9003
# Proxies measured for cold start (exec -> first 200 on GET /small) and binary size.
COLDSTART_PROXIES = ["nginx", "haproxy", "caddy", "zoo"]
COLDSTART_RUNS = 5

# zoo-b: a second zoo build for A/B runs in the same run (ZOO_B_CMD), e.g. an
# EXPERIMENT commit against the base; never part of the default set.
PROXY_ORDER = ["direct", "nginx", "haproxy", "caddy", "go-seed", "zoo", "zoo-b"]
PROXY_PORTS = {"direct": UPSTREAM_PORT, "nginx": 8101, "haproxy": 8102,
               "caddy": 8103, "go-seed": 8104, "zoo": 8105, "zoo-b": 8106}
GO_SEED_BIN = os.path.join(BUILD, "go-seed")

STARTED: list[subprocess.Popen] = []   # everything we launched, for cleanup


def write_suite_results(results_dir: str, stamp: str, suite: str, md: list[str],
                        rows: list[dict]) -> None:
    """Writes a suite's table (STAMP-HOST-SUITE.md) and its raw rows (.rows.txt), prints the
    table: the one ending of every `--suite`."""
    os.makedirs(results_dir, exist_ok=True)
    path = os.path.join(results_dir, f"{stamp}-{socket.gethostname()}-{suite}.md")
    with open(path, "w") as f:
        f.write("\n".join(md))
    with open(path.replace(".md", ".rows.txt"), "w") as f:
        f.writelines(repr(r) + "\n" for r in rows)
    print("\n".join(md))
    log(f"table: {path}")


def run_rounds(rounds: int, scenarios: list[dict], proxies: list[str], logdir: str,
               measure_one) -> tuple[list[dict], list[float]]:
    """Measures every scenario with every proxy `rounds` times, the proxies' order rotated
    each round (none always runs first, on a cold or a warm machine), and logs each row with
    the load: the loop of every `--suite`. `measure_one(proxy, scenario, round, logpath)`
    returns a row. Returns the rows and the 1-minute load before each."""
    rows, loads = [], []
    for rnd in range(1, rounds + 1):
        for sc in scenarios:
            k = (rnd - 1) % len(proxies)
            for px in proxies[k:] + proxies[:k]:
                loads.append(os.getloadavg()[0])
                row = measure_one(px, sc, rnd,
                                  os.path.join(logdir, f"r{rnd}-{sc['name']}-{px}.log"))
                rows.append(row)
                log(f"r{rnd} {sc['name']:<22} {px:<6} "
                    + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in row.items()
                               if k not in ("round", "scenario", "proxy"))
                    + f"  load1={loads[-1]:.1f}")
    return rows, loads


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    # comm may contain spaces/parens: split after the LAST ')'.
    # fields[0] is field 3 (state) of proc(5); field N is fields[N-3].
    return s.rsplit(")", 1)[1].split()


def _alive(pid: int) -> bool:
    f = _stat_fields(pid)
    return f is not None and f[0] != "Z"


def proc_tree(root: int) -> list[int]:
    """root and all of its live descendants (processes, not threads)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        f = _stat_fields(int(d))
        if f is None:
            continue
        children.setdefault(int(f[1]), []).append(int(d))
    out, stack = [], [root]
    while stack:
        p = stack.pop()
        if _stat_fields(p) is None:
            continue
        out.append(p)
        stack.extend(children.get(p, []))
    return out


def tree_cpu_ticks(root: int) -> int:
    """utime+stime of every live process of the tree (each process's
    /proc/PID/stat already sums all of its threads, live and exited), plus
    cutime+cstime of the root (children it has reaped)."""
    total = 0
    for pid in proc_tree(root):
        f = _stat_fields(pid)
        if f is None:
            continue
        total += int(f[11]) + int(f[12])          # utime(14) + stime(15)
        if pid == root:
            total += int(f[13]) + int(f[14])      # cutime(16) + cstime(17)
    return total


def tree_peak_rss_kib(root: int) -> tuple[int, int]:
    """(sum of VmHWM over the tree's processes, number of processes)."""
    total, n = 0, 0
    for pid in proc_tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
                        n += 1
                        break
        except OSError:
            pass
    return total, n


def cpu_times() -> dict[str, tuple[int, int]]:
    """per-core (total, idle) jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                vals = [int(x) for x in parts[1:9]]   # user..steal
                out[parts[0]] = (sum(vals), vals[3] + vals[4])
    return out


def busy_pct(before, after) -> dict[str, float]:
    res = {}
    for cpu, (t1, i1) in after.items():
        t0, i0 = before.get(cpu, (t1, i1))
        dt = t1 - t0
        res[cpu] = 100.0 * (dt - (i1 - i0)) / dt if dt > 0 else 0.0
    return res


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------

def render(template: str, out_path: str, **subs) -> str:
    with open(os.path.join(CONF, template)) as f:
        text = f.read()
    for k, v in subs.items():
        text = text.replace("@" + k + "@", str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise BenchError(f"{template}: unreplaced placeholders {left}")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        f.write(text)
    return out_path


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def spawn(name: str, cmd: list[str], cpus: str | None, env_extra=None,
          logname: str | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(env_extra or {})
    full = (["taskset", "-c", cpus] if cpus else []) + cmd
    os.makedirs(RUN, exist_ok=True)
    logf = open(os.path.join(RUN, (logname or name) + ".log"), "ab")
    logf.write(f"\n=== {time.strftime('%F %T')} {shlex.join(full)}\n".encode())
    logf.flush()
    p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=logf,
                         stderr=subprocess.STDOUT, env=env,
                         start_new_session=True)
    logf.close()
    p.bench_name = name  # type: ignore[attr-defined]
    STARTED.append(p)
    return p


def stop(p: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM the process we started (by pid), wait, then SIGKILL it and any
    descendants still alive (by pid)."""
    if p is None:
        return
    tree = proc_tree(p.pid) if p.poll() is None else []
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"  ! {getattr(p, 'bench_name', p.pid)} ignored SIGTERM for {timeout}s: SIGKILL")
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)
    # descendants (workers, supervised children) that outlived the root:
    # SIGTERM, 3 s grace, then SIGKILL -- each by its pid.
    left = [pid for pid in tree if pid != p.pid and _stat_fields(pid) is not None]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [pid for pid in left if _alive(pid)]
        if not left:
            break
        log(f"  ! {len(left)} process(es) of {getattr(p, 'bench_name', p.pid)} survived {sig.name}")
    if p in STARTED:
        STARTED.remove(p)


def stop_all() -> None:
    for p in list(reversed(STARTED)):
        try:
            stop(p, timeout=5)
        except Exception as e:  # noqa: BLE001 - best effort at exit
            log(f"  ! stopping pid {p.pid}: {e}")


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 host: str = "127.0.0.1", timeout: float = 10.0):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body else {}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
    finally:
        conn.close()


def log_tail(name: str, n: int = 5) -> str:
    try:
        with open(os.path.join(RUN, name + ".log"), errors="replace") as f:
            lines = f.read().splitlines()[-n:]
        return "\n    " + "\n    ".join(lines)
    except OSError:
        return ""


def wait_ready(p: subprocess.Popen | None, port: int, name: str,
               timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if p is not None and p.poll() is not None:
            raise BenchError(f"{name} exited with code {p.returncode} before "
                             f"listening on {port}; {RUN}/{name}.log ends:"
                             + log_tail(name))
        try:
            st, _, _ = http_request(port, "GET", "/small", timeout=2)
            if st == 200:
                return
            last = f"status {st}"
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise BenchError(f"{name} not ready on port {port} after {timeout}s ({last}); "
                     f"see {RUN}/{name}.log")


class Proxy:
    def __init__(self, name: str, args):
        self.name = name
        self.port = PROXY_PORTS[name]
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.dir = os.path.join(RUN, name)

    def command(self) -> tuple[list[str], dict]:
        d, port = self.dir, self.port
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        if self.name == "nginx":
            conf = render("nginx-proxy.conf", os.path.join(d, "nginx.conf"),
                          RUN=d, PORT=port, UPSTREAM=UPSTREAM, DATA=DATA)
            return (["nginx", "-p", d + "/", "-e", os.path.join(d, "error.log"),
                     "-c", conf], {})
        if self.name == "haproxy":
            conf = render("haproxy.cfg", os.path.join(d, "haproxy.cfg"),
                          PORT=port, UPSTREAM=UPSTREAM)
            return (["haproxy", "-db", "-f", conf], {})
        if self.name == "caddy":
            conf = render("Caddyfile", os.path.join(d, "Caddyfile"),
                          PORT=port, UPSTREAM=UPSTREAM, DATA=DATA)
            env = {"HOME": d, "XDG_DATA_HOME": os.path.join(d, "data"),
                   "XDG_CONFIG_HOME": os.path.join(d, "config")}
            return (["caddy", "run", "--config", conf, "--adapter", "caddyfile"], env)
        if self.name == "go-seed":
            return ([GO_SEED_BIN], {"PORT": str(port)})
        if self.name in ("zoo", "zoo-b"):
            cmd = os.environ["ZOO_CMD" if self.name == "zoo" else "ZOO_B_CMD"]
            cmd = cmd.replace("{port}", str(port))
            return (["bash", "-c", "exec " + cmd],
                    {"PORT": str(port), "ZOO_BENCH_PORT": str(port),
                     "ZOO_BENCH_UPSTREAM": UPSTREAM})
        raise BenchError(f"unknown proxy {self.name}")

    def start(self) -> None:
        if self.name == "direct":
            return
        if port_open(self.port):
            raise BenchError(f"port {self.port} (for {self.name}) is already in use")
        cmd, env = self.command()
        self.proc = spawn(self.name, cmd, self.args.proxy_cpus, env)
        wait_ready(self.proc, self.port, self.name)

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None
        deadline = time.monotonic() + 10
        while self.name != "direct" and port_open(self.port):
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name}: port {self.port} still open after stop")
            time.sleep(0.05)


# --------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------

def make_data() -> tuple[bytes, str]:
    os.makedirs(DATA, exist_ok=True)
    path = os.path.join(DATA, "big.bin")
    want = hashlib.shake_256(b"reverse-proxy-bench").digest(BIG_SIZE)
    if not os.path.exists(path) or os.path.getsize(path) != BIG_SIZE:
        with open(path, "wb") as f:
            f.write(want)
    os.chmod(DATA, 0o755)
    os.chmod(path, 0o644)
    return want, hashlib.sha256(want).hexdigest()


def check_endpoints(port: int, name: str, big_sha: str, host="127.0.0.1",
                    small: bytes | None = None) -> bytes:
    """Exact checks through one proxy (or directly): status 200, the exact
    bytes of /small (as the upstream sends them) and /big, and that the
    upstream read the whole upload. Returns the /small body."""
    st, _, body = http_request(port, "GET", "/small", host=host)
    if st != 200 or len(body) != SMALL_SIZE or (small is not None and body != small):
        raise BenchError(f"{name}: GET /small -> {st}, {len(body)} bytes {body[:40]!r} "
                         f"(want 200, the upstream's {SMALL_SIZE} bytes)")
    small_body = body
    st, _, body = http_request(port, "GET", "/big", host=host)
    if st != 200 or hashlib.sha256(body).hexdigest() != big_sha:
        raise BenchError(f"{name}: GET /big -> {st}, {len(body)} bytes, wrong content")
    st, hdrs, body = http_request(port, "POST", "/upload", body=b"u" * UPLOAD_SIZE, host=host)
    got = int(hdrs.get("x-request-length", "0"))
    if st != 200 or body != b"ok\n" or got < UPLOAD_SIZE:
        raise BenchError(f"{name}: POST /upload (1 MiB) -> {st} {body[:40]!r}, "
                         f"upstream read {got} bytes (want 200 'ok', >= {UPLOAD_SIZE})")
    return small_body


def check_upload_body_is_read() -> None:
    """The upstream must not answer /upload before it has the whole body: send
    headers + half the body, expect silence for 1 s, then send the rest and
    expect 200 with X-Request-Length covering the body."""
    half = UPLOAD_SIZE // 2
    with socket.create_connection(("127.0.0.1", UPSTREAM_PORT), timeout=5) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n" % UPLOAD_SIZE)
        s.sendall(b"u" * half)
        s.settimeout(1.0)
        try:
            early = s.recv(1)
        except socket.timeout:
            early = b""
        if early:
            raise BenchError("upstream answered /upload before the body was "
                             "complete: it does not read the request body")
        s.settimeout(5)
        s.sendall(b"u" * (UPLOAD_SIZE - half))
        resp = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            resp += chunk
    head = resp.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    m = re.search(r"(?im)^x-request-length:\s*(\d+)", head)
    if not head.startswith("HTTP/1.1 200") or not m or int(m.group(1)) < UPLOAD_SIZE:
        raise BenchError(f"upstream /upload slow-body check failed: {head!r}")


def check_streaming(port: int, name: str, logpath: str) -> dict[str, str]:
    """Short websocket-echo and sse runs through one proxy. Returns
    {scenario: why} for the scenarios it cannot serve (they are then skipped
    for that proxy and reported as pending, instead of aborting the run)."""
    bad = {}
    for sc in SCENARIOS:
        if not sc.get("driver"):
            continue
        try:
            res = run_wrk(port, dict(sc, conns=2), 1, None, logpath)
            errs = sum(int(res[k]) for k in ("err_connect", "err_read", "err_write",
                                             "err_status", "err_timeout"))
            if errs or not res["requests"]:
                bad[sc["name"]] = (f"{int(res['requests'])} ok, {errs} errors in a 1 s check "
                                   f"(status {int(res['err_status'])}, read {int(res['err_read'])}, "
                                   f"timeout {int(res['err_timeout'])})")
        except BenchError as e:
            bad[sc["name"]] = str(e)[:120]
    return bad


def skip_unserved(skipped: dict[tuple[str, str], str], scenarios: list[dict], px: str,
                  bad: dict[str, str]) -> None:
    """Records the scenarios of this run that the preflight found `px` cannot serve (
    {scenario: why}): they are skipped for it and reported as pending."""
    for scn, why in bad.items():
        if any(sc["name"] == scn for sc in scenarios):
            skipped[(scn, px)] = why
            log(f"  ! {px}: {scn} does not work through it, skipped: {why}")


def binary_of(px: str) -> str:
    if px == "zoo":
        first = shlex.split(os.environ["ZOO_CMD"])[0]
        return shutil.which(first) or first
    return shutil.which(px) or px


def coldstart(px: str, args) -> dict:
    """exec -> first 200 on GET /small, COLDSTART_RUNS fresh starts."""
    times = []
    for _ in range(COLDSTART_RUNS):
        pr = Proxy(px, args)
        if port_open(pr.port):
            raise BenchError(f"port {pr.port} (for {px}) is already in use")
        cmd, env = pr.command()
        t0 = time.monotonic()
        pr.proc = spawn(px, cmd, args.proxy_cpus, env)
        deadline = t0 + 20
        try:
            while True:
                if pr.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"{px}: no 200 on /small within 20 s of exec")
                try:
                    st, _, _ = http_request(pr.port, "GET", "/small", timeout=2)
                    if st == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.001)
            times.append((time.monotonic() - t0) * 1000)
        finally:
            pr.stop()
    path = binary_of(px)
    return {"median_ms": statistics.median(times), "min_ms": min(times),
            "max_ms": max(times), "binary": path,
            "size_mib": os.path.getsize(path) / (1 << 20)}


# --------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------

def wrk_script(sc) -> str:
    parts = []
    if sc["lua"]:
        with open(os.path.join(BENCH, "lua", sc["lua"])) as f:
            parts.append(f.read())
    with open(os.path.join(BENCH, "lua", "report.lua")) as f:
        parts.append(f.read())
    path = os.path.join(RUN, f"wrk-{sc['name']}.lua")
    with open(path, "w") as f:
        f.write("\n".join(parts))
    return path


def run_wrk(port: int, sc, seconds: int, cpus: str | None, logpath: str):
    if sc.get("driver"):
        cmd = [sys.executable, os.path.join(HERE, "loadgen.py"), sc["driver"],
               str(port), str(sc["conns"]), str(seconds)]
        if cpus:
            cmd = ["taskset", "-c", cpus] + cmd
        return _run_load(cmd, seconds, logpath)
    cmd = ["wrk", "-t1", f"-c{sc['conns']}", f"-d{seconds}s", "--latency",
           "--timeout", "5s", "-s", wrk_script(sc)]
    for h in sc["headers"]:
        cmd += ["-H", h]
    cmd.append(f"http://127.0.0.1:{port}{sc['path']}")
    if cpus:
        cmd = ["taskset", "-c", cpus] + cmd
    return _run_load(cmd, seconds, logpath)


def _run_load(cmd: list[str], seconds: int, logpath: str):
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=seconds + 60)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(logpath, "a") as f:
        f.write(f"$ {shlex.join(cmd)}\n{p.stdout}\n")
    m = re.search(r"^BENCHJSON (\{.*\})$", p.stdout, re.M)
    if p.returncode != 0 or not m:
        raise BenchError(f"{cmd[0] if cmd[0] != 'taskset' else cmd[3]} failed "
                         f"(rc {p.returncode}): {p.stdout[-500:]}")
    res = json.loads(m.group(1))
    res["wrk_cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return res


# --------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------

def measure(proxy: Proxy, sc, rnd: int, args, upstream: subprocess.Popen, logpath: str):
    proxy.start()
    try:
        warm = run_wrk(proxy.port, sc, args.warmup, args.load_cpus, logpath)
        root = proxy.proc.pid if proxy.proc else None
        c0 = tree_cpu_ticks(root) if root else 0
        u0 = tree_cpu_ticks(upstream.pid)
        s0 = cpu_times()
        res = run_wrk(proxy.port, sc, args.duration, args.load_cpus, logpath)
        s1 = cpu_times()
        u1 = tree_cpu_ticks(upstream.pid)
        c1 = tree_cpu_ticks(root) if root else 0
        rss_kib, nproc = tree_peak_rss_kib(root) if root else (0, 0)
        if proxy.proc is not None and proxy.proc.poll() is not None:
            raise BenchError(f"{proxy.name} died during the run (code {proxy.proc.returncode})")
    finally:
        proxy.stop()
    busy = busy_pct(s0, s1)
    reqs = res["requests"]
    secs = res["duration_us"] / 1e6
    errs = {k: int(res[k]) for k in ("err_connect", "err_read", "err_write",
                                      "err_status", "err_timeout")}
    row = {
        "round": rnd, "scenario": sc["name"], "proxy": proxy.name,
        "requests": int(reqs), "duration_s": round(secs, 3),
        "rps": round(reqs / secs, 1) if secs else 0.0,
        "bytes_per_req": round(res["bytes"] / reqs, 1) if reqs else 0.0,
        "p50_ms": res["p50_us"] / 1000, "p90_ms": res["p90_us"] / 1000,
        "p99_ms": res["p99_us"] / 1000, "max_ms": res["max_us"] / 1000,
        "mean_ms": round(res["mean_us"] / 1000, 3),
        **errs,
        "errors_total": sum(errs.values()),
        "warmup_errors": sum(int(warm[k]) for k in errs),
        "proxy_cpu_s": round((c1 - c0) / CLK_TCK, 2) if root else "",
        "proxy_cpu_ms_per_1k": round((c1 - c0) / CLK_TCK * 1e6 / reqs, 2) if root and reqs else "",
        "upstream_cpu_ms_per_1k": round((u1 - u0) / CLK_TCK * 1e6 / reqs, 2) if reqs else "",
        "wrk_cpu_s": round(res["wrk_cpu_s"], 2),
        "proxy_peak_rss_mib": round(rss_kib / 1024, 1) if root else "",
        "proxy_procs": nproc if root else "",
        "ev_p50_ms": res["ev_p50_us"] / 1000 if "ev_p50_us" in res else "",
        "ev_p99_ms": res["ev_p99_us"] / 1000 if "ev_p99_us" in res else "",
    }
    for cpu in sorted(busy):
        row[f"{cpu}_busy_pct"] = round(busy[cpu], 1)
    return row


# --------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x not in ("", None)]
    return statistics.median(xs) if xs else None


def fmt(x, nd=1, thousands=False):
    if x is None:
        return "-"
    if thousands:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def summarise(rows, proxies, scenarios):
    """Per (scenario, proxy): medians over rounds, and median of the per-round
    ratios against direct / nginx measured in the same round."""
    by = {}
    for r in rows:
        by.setdefault((r["scenario"], r["proxy"]), []).append(r)
    out = []
    for sc in scenarios:
        for px in proxies:
            rs = by.get((sc["name"], px), [])
            if not rs:
                continue

            def ratio(ref, field="rps"):
                vals = []
                for r in rs:
                    ref_r = [x for x in by.get((sc["name"], ref), []) if x["round"] == r["round"]]
                    if ref_r and ref_r[0][field] not in ("", None, 0) and r[field] not in ("", None):
                        vals.append(r[field] / ref_r[0][field])
                return med(vals)

            rps = [r["rps"] for r in rs]
            s = {
                "scenario": sc["name"], "proxy": px, "rounds": len(rs),
                "rps_median": med(rps), "rps_min": min(rps), "rps_max": max(rps),
                "rps_vs_direct": ratio("direct"),
                "rps_vs_nginx": ratio("nginx") if "nginx" in proxies else None,
                "p50_ms": med([r["p50_ms"] for r in rs]),
                "p99_ms": med([r["p99_ms"] for r in rs]),
                "ev_p50_ms": med([r.get("ev_p50_ms", "") for r in rs]),
                "ev_p99_ms": med([r.get("ev_p99_ms", "") for r in rs]),
                "p50_vs_nginx": (ratio("nginx", "p50_ms")
                                 if "nginx" in proxies and px != "direct" else None),
                "proxy_cpu_ms_per_1k": med([r["proxy_cpu_ms_per_1k"] for r in rs]),
                "cpu_vs_nginx": (ratio("nginx", "proxy_cpu_ms_per_1k")
                                 if "nginx" in proxies and px != "direct" else None),
                "upstream_cpu_ms_per_1k": med([r["upstream_cpu_ms_per_1k"] for r in rs]),
                "proxy_peak_rss_mib": max([r["proxy_peak_rss_mib"] for r in rs
                                           if r["proxy_peak_rss_mib"] != ""], default=None),
                "bytes_per_req": med([r["bytes_per_req"] for r in rs]),
                "errors_total": sum(r["errors_total"] for r in rs),
                "non2xx_total": sum(r["err_status"] for r in rs),
                "warmup_errors": sum(r["warmup_errors"] for r in rs),
                "cpu0_busy_pct": med([r.get("cpu0_busy_pct", "") for r in rs]),
                "cpu1_busy_pct": med([r.get("cpu1_busy_pct", "") for r in rs]),
            }
            out.append(s)
    return out


def markdown(summary, proxies, scenarios, meta) -> str:
    L = []
    L.append(f"# Reverse-proxy benchmark, {meta['date']} on {meta['host']}")
    L.append("")
    L.append(f"- machine: {meta['cpus']} cores ({meta['cpu_model']}), kernel {meta['kernel']}")
    L.append(f"- pinning: {meta['pinning']}")
    L.append(f"- {meta['rounds']} round(s); each measurement = fresh proxy process, "
             f"{meta['warmup']} s wrk warm-up, then {meta['duration']} s measured; "
             "proxy order rotates every round; figures are medians over rounds")
    L.append(f"- versions: {meta['versions']}")
    L.append(f"- wall time: {meta['wall_s']:.0f} s")
    L.append("")
    import targets  # lib/targets.py
    if (any(s["proxy"] == "zoo" and s["scenario"] in targets.TARGETS for s in summary)
            and "nginx" in proxies):
        L.append("## zoo vs nginx (issue 7's targets)")
        L.append("")
        L.append(targets.table([{k: ("" if v is None else v) for k, v in s.items()}
                                for s in summary]))
        L.append("")
    for module in SCENARIO_MODULES:
        table = module.report(summary)
        if table:
            L += [table, ""]
    L.append("## req/s relative to direct (median of per-round ratios; 1.00 = no proxy)")
    L.append("")
    L.append("| proxy | " + " | ".join(s["name"] for s in scenarios) + " |")
    L.append("|---|" + "---:|" * len(scenarios))
    idx = {(s["scenario"], s["proxy"]): s for s in summary}
    for px in proxies:
        cells = []
        for sc in scenarios:
            s = idx.get((sc["name"], px))
            cells.append(fmt(s["rps_vs_direct"], 2) if s else "-")
        L.append(f"| {px} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("## proxy CPU time, ms per 1000 requests (lower is better)")
    L.append("")
    L.append("| proxy | " + " | ".join(s["name"] for s in scenarios) + " |")
    L.append("|---|" + "---:|" * len(scenarios))
    for px in proxies:
        if px == "direct":
            continue
        cells = []
        for sc in scenarios:
            s = idx.get((sc["name"], px))
            cells.append(fmt(s["proxy_cpu_ms_per_1k"], 1) if s else "-")
        L.append(f"| {px} | " + " | ".join(cells) + " |")
    for sc in scenarios:
        L.append("")
        L.append(f"## {sc['name']}: {sc['desc']}")
        L.append("")
        L.append("| proxy | req/s | spread | vs direct | vs nginx | p50 ms | p99 ms "
                 "| proxy CPU ms/1k req | CPU vs nginx | upstream CPU ms/1k req "
                 "| peak RSS MiB | errors | core0/core1 busy % |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for px in proxies:
            s = idx.get((sc["name"], px))
            if not s:
                continue
            spread = ((s["rps_max"] - s["rps_min"]) / s["rps_median"] * 100
                      if s["rps_median"] else 0)
            err = str(s["errors_total"])
            if s["errors_total"]:
                err += f" ({s['non2xx_total']} non-2xx)"
            if s["warmup_errors"]:
                err += f" [+{s['warmup_errors']} in warm-up]"
            busy = (f"{fmt(s['cpu0_busy_pct'], 0)}/{fmt(s['cpu1_busy_pct'], 0)}")
            L.append(
                f"| {px} | {fmt(s['rps_median'], thousands=True)} | ±{spread / 2:.0f}% "
                f"| {fmt(s['rps_vs_direct'], 2)} | {fmt(s['rps_vs_nginx'], 2)} "
                f"| {fmt(s['p50_ms'], 2)} | {fmt(s['p99_ms'], 2)} "
                f"| {fmt(s['proxy_cpu_ms_per_1k'], 1)} | {fmt(s['cpu_vs_nginx'], 2)} "
                f"| {fmt(s['upstream_cpu_ms_per_1k'], 1)} "
                f"| {fmt(s['proxy_peak_rss_mib'], 1)} | {err} | {busy} |")
        skipped = [px for px in proxies if (sc["name"], px) in meta.get("skipped", {})]
        for px in skipped:
            L.append(f"| {px} | pending: {meta['skipped'][(sc['name'], px)]} |"
                     + " |" * 11)
        if sc.get("driver") == "sse":
            L.append("")
            L.append("Streaming latency (medians over rounds):")
            L.append("")
            L.append("| proxy | first-byte p50 ms | first-byte p99 ms | first-byte p50 vs nginx "
                     "| event latency p50 ms | event latency p99 ms |")
            L.append("|---|---:|---:|---:|---:|---:|")
            for px in proxies:
                s = idx.get((sc["name"], px))
                if s:
                    L.append(f"| {px} | {fmt(s['p50_ms'], 2)} | {fmt(s['p99_ms'], 2)} "
                             f"| {fmt(s['p50_vs_nginx'], 2)} | {fmt(s['ev_p50_ms'], 2)} "
                             f"| {fmt(s['ev_p99_ms'], 2)} |")
    if meta.get("coldstart"):
        L.append("")
        L.append(f"## cold start and size")
        L.append("")
        L.append(f"Cold start = exec of the (pinned) process -> first `200` on `GET /small` "
                 f"through it, polled every 1 ms; median of {COLDSTART_RUNS} fresh starts. "
                 "Binary = the executable file's size (shared libraries not counted: "
                 "nginx and haproxy link the system's openssl, pcre, zlib...; zoo and caddy "
                 "are self-contained apart from libc).")
        L.append("")
        L.append("| proxy | cold start ms (median) | min | max | binary | size MiB |")
        L.append("|---|---:|---:|---:|---|---:|")
        for px, cs in meta["coldstart"].items():
            L.append(f"| {px} | {cs['median_ms']:.1f} | {cs['min_ms']:.1f} | {cs['max_ms']:.1f} "
                     f"| `{cs['binary']}` | {cs['size_mib']:.1f} |")
    L.append("")
    return "\n".join(L)


def versions(proxies) -> str:
    def out(cmd):
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=10)
            return p.stdout.strip().splitlines()[0] if p.stdout.strip() else "?"
        except Exception:  # noqa: BLE001
            return "?"
    v = []
    v.append("nginx " + out(["nginx", "-v"]).split("/")[-1])
    if "haproxy" in proxies:
        v.append("haproxy " + out(["haproxy", "-v"]).split()[2])
    if "caddy" in proxies:
        v.append("caddy " + out(["caddy", "version"]).split()[0])
    if "go-seed" in proxies:
        vf = GO_SEED_BIN + ".version"
        v.append("go-seed " + (open(vf).read().strip() if os.path.exists(vf) else "?"))
    v.append("wrk " + out(["wrk", "-v"]).split()[1])
    if "zoo" in proxies:
        v.append(f"zoo: ZOO_CMD={os.environ.get('ZOO_CMD')!r}")
    if "zoo-b" in proxies:
        v.append(f"zoo-b: ZOO_B_CMD={os.environ.get('ZOO_B_CMD')!r}")
    return ", ".join(v)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("proxies", nargs="*",
                    help=f"subset of {PROXY_ORDER} (default: all available; "
                         "direct is always included)")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 3)))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", 8)))
    ap.add_argument("--warmup", type=int, default=int(os.environ.get("BENCH_WARMUP", 2)))
    ap.add_argument("--scenarios", default=os.environ.get("BENCH_SCENARIOS", ""),
                    help="comma-separated subset of: " + ",".join(s["name"] for s in SCENARIOS))
    ap.add_argument("--no-pin", action="store_true",
                    default=os.environ.get("BENCH_PIN", "1") == "0",
                    help="do not pin with taskset (default: pin)")
    ap.add_argument("--proxy-cpus", default=os.environ.get("BENCH_PROXY_CPUS", "1"))
    ap.add_argument("--load-cpus", default=os.environ.get("BENCH_LOAD_CPUS", "0"),
                    help="cores for wrk and the upstream")
    ap.add_argument("--results-dir", default=os.path.join(BENCH, "results"))
    ap.add_argument("--no-coldstart", action="store_true",
                    default=os.environ.get("BENCH_COLDSTART", "1") == "0",
                    help="skip the cold-start measurement")
    ap.add_argument("--suite", choices=["proxy", "tls", "replicas"], default="proxy",
                    help="tls: the TLS, HTTP/2 and idle-resource scenarios (lib/scenarios_tls.py); "
                         "replicas: balancing over two upstreams (lib/scenarios_replicas.py)")
    args = ap.parse_args()
    if args.no_pin:
        args.proxy_cpus = args.load_cpus = None
    if args.suite == "tls":
        import scenarios_tls  # lib/scenarios_tls.py
        return scenarios_tls.main(args, args.proxies)
    if args.suite == "replicas":
        import scenarios_replicas  # lib/scenarios_replicas.py
        return scenarios_replicas.main(args, args.proxies)

    available = ["direct", "nginx", "haproxy", "caddy", "go-seed"]
    if os.environ.get("ZOO_CMD"):
        available.append("zoo")
    wanted = args.proxies or available
    for p in wanted:
        if p not in PROXY_ORDER:
            ap.error(f"unknown proxy {p!r}; known: {', '.join(PROXY_ORDER)}")
        if p == "zoo" and not os.environ.get("ZOO_CMD"):
            ap.error("zoo requested but ZOO_CMD is not set")
        if p == "zoo-b" and not os.environ.get("ZOO_B_CMD"):
            ap.error("zoo-b requested but ZOO_B_CMD is not set")
    proxies = [p for p in PROXY_ORDER if p in wanted or p == "direct"]
    scenarios = SCENARIOS
    if args.scenarios:
        names = args.scenarios.split(",")
        bad = [n for n in names if n not in {s["name"] for s in SCENARIOS}]
        if bad:
            ap.error(f"unknown scenario(s) {bad}")
        scenarios = [s for s in SCENARIOS if s["name"] in names]

    missing = [t for t in ["nginx", "wrk", "taskset"] if not shutil.which(t)]
    missing += [p for p in ("haproxy", "caddy") if p in proxies and not shutil.which(p)]
    if "go-seed" in proxies and not os.access(GO_SEED_BIN, os.X_OK):
        missing.append(GO_SEED_BIN)
    if missing:
        log(f"missing: {', '.join(missing)} -- run {BENCH}/setup.sh first")
        return 2

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    host = socket.gethostname()
    os.makedirs(args.results_dir, exist_ok=True)
    csv_path = os.path.join(args.results_dir, f"{stamp}-{host}.csv")
    md_path = os.path.join(args.results_dir, f"{stamp}-{host}.md")
    logdir = os.path.join(BUILD, "logs", stamp)
    os.makedirs(logdir, exist_ok=True)
    shutil.rmtree(RUN, ignore_errors=True)
    os.makedirs(RUN, exist_ok=True)

    def on_signal(signum, _frame):
        log(f"\nsignal {signum}: stopping everything we started")
        stop_all()
        sys.exit(130)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    t_start = time.monotonic()
    rows = []
    skipped: dict[tuple[str, str], str] = {}
    cold: dict = {}
    try:
        for port in ([UPSTREAM_PORT, SINK_PORT, STREAMER_WS_PORT, STREAMER_SSE_PORT]
                     + [PROXY_PORTS[p] for p in proxies]):
            if port_open(port):
                raise BenchError(f"port {port} is already in use; stop whatever listens there")
        _, big_sha = make_data()
        for module in SCENARIO_MODULES:
            module.prepare(DATA)
        updir = os.path.join(RUN, "upstream")
        os.makedirs(os.path.join(updir, "tmp"), exist_ok=True)
        upconf = render("upstream-nginx.conf", os.path.join(updir, "nginx.conf"),
                        RUN=updir, DATA=DATA)
        upstream = spawn("upstream", ["nginx", "-p", updir + "/", "-e",
                                      os.path.join(updir, "error.log"), "-c", upconf],
                         args.load_cpus)
        wait_ready(upstream, UPSTREAM_PORT, "upstream")
        streamer = None
        if any(sc.get("driver") for sc in scenarios):
            # Debian's python3 (python3-websockets), whatever python3 is first on PATH.
            debian_py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
            streamer = spawn("streamer", [debian_py, os.path.join(HERE, "streamer.py"),
                                          str(STREAMER_WS_PORT), str(STREAMER_SSE_PORT)],
                             args.load_cpus)
            deadline = time.monotonic() + 10
            while not (port_open(STREAMER_WS_PORT) and port_open(STREAMER_SSE_PORT)):
                if streamer.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("lib/streamer.py did not start; see "
                                     f"{RUN}/streamer.log:" + log_tail("streamer"))
                time.sleep(0.05)

        log("preflight: upstream endpoints, body-read check, IPv6 listener")
        small = check_endpoints(UPSTREAM_PORT, "direct", big_sha)
        for module in SCENARIO_MODULES:
            for why in module.check(UPSTREAM_PORT, "direct", DATA).values():
                raise BenchError(f"direct: {why}")
        check_upload_body_is_read()
        try:
            check_endpoints(UPSTREAM_PORT, "direct [::1]", big_sha, host="::1", small=small)
        except OSError as e:
            log(f"  note: [::1]:{UPSTREAM_PORT} not reachable ({e}); IPv4 only")
        for px in proxies:
            if px == "direct":
                continue
            pr = Proxy(px, args)
            pr.start()
            try:
                check_endpoints(pr.port, px, big_sha, small=small)
                bad = {}
                for module in SCENARIO_MODULES:
                    bad.update(module.check(pr.port, px, DATA))
            finally:
                pr.stop()
            log(f"  {px}: /small, /big (sha256), /upload (1 MiB read upstream) OK")
            skip_unserved(skipped, scenarios, px, bad)
        if streamer is not None:
            for px in proxies:
                pr = Proxy(px, args)
                pr.start()
                try:
                    bad = check_streaming(pr.port, px, os.path.join(logdir, "preflight.log"))
                finally:
                    pr.stop()
                skip_unserved(skipped, scenarios, px, bad)
                if not bad:
                    log(f"  {px}: websocket echo, sse OK")
        if not args.no_coldstart:
            for px in COLDSTART_PROXIES:
                if px in proxies:
                    cold[px] = coldstart(px, args)
                    log(f"  cold start {px}: {cold[px]['median_ms']:.1f} ms "
                        f"(min {cold[px]['min_ms']:.1f}, max {cold[px]['max_ms']:.1f}); "
                        f"{cold[px]['binary']} {cold[px]['size_mib']:.1f} MiB")

        n_total = args.rounds * sum(1 for sc in scenarios for px in proxies
                                    if (sc["name"], px) not in skipped)
        per = args.warmup + args.duration + 1.5
        log(f"measuring {len(proxies)} proxies x {len(scenarios)} scenarios x "
            f"{args.rounds} rounds = {n_total} runs, ~{n_total * per / 60:.0f} min; "
            f"pinning: {'none' if args.no_pin else f'proxy on cpu {args.proxy_cpus}, wrk+upstream on cpu {args.load_cpus}'}")
        n = 0
        for rnd in range(1, args.rounds + 1):
            for sc in scenarios:
                k = (rnd - 1) % len(proxies)
                order = proxies[k:] + proxies[:k]
                for px in order:
                    if (sc["name"], px) in skipped:
                        continue
                    n += 1
                    logpath = os.path.join(logdir, f"r{rnd}-{sc['name']}-{px}.log")
                    row = measure(Proxy(px, args), sc, rnd, args, upstream, logpath)
                    rows.append(row)
                    log(f"[{n}/{n_total}] r{rnd} {sc['name']:<16} {px:<8} "
                        f"{row['rps']:>10,.0f} req/s  p50 {row['p50_ms']:.2f} ms  "
                        f"p99 {row['p99_ms']:.2f} ms  cpu/1k {row['proxy_cpu_ms_per_1k'] or '-'}  "
                        f"err {row['errors_total']}  "
                        f"busy {row.get('cpu0_busy_pct', '?')}/{row.get('cpu1_busy_pct', '?')}")
                    time.sleep(0.5)
    except BenchError as e:
        log(f"ERROR: {e}")
        stop_all()
        return 1
    finally:
        stop_all()

    wall = time.monotonic() - t_start
    fields = []
    for r in rows:
        for k in r:
            if k not in fields:
                fields.append(k)
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["date", "host", "pinning"] + fields)
        w.writeheader()
        pin = "none" if args.no_pin else f"proxy:{args.proxy_cpus};load+upstream:{args.load_cpus}"
        for r in rows:
            w.writerow({"date": stamp, "host": host, "pinning": pin, **r})
    summary = summarise(rows, proxies, scenarios)
    with open(csv_path.replace(".csv", ".summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(summary[0].keys()))
        w.writeheader()
        w.writerows(summary)
    cpu_model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    meta = {
        "date": stamp, "host": host, "cpus": os.cpu_count(), "cpu_model": cpu_model,
        "kernel": platform.release(),
        "pinning": ("none (everything shares all cores)" if args.no_pin else
                    f"proxy on cpu {args.proxy_cpus}; wrk + upstream nginx on cpu {args.load_cpus}"),
        "rounds": args.rounds, "warmup": args.warmup, "duration": args.duration,
        "versions": versions(proxies), "wall_s": wall,
        "skipped": skipped, "coldstart": cold,
    }
    md = markdown(summary, proxies, scenarios, meta)
    with open(md_path, "w") as f:
        f.write(md)
    print(md)
    log(f"raw rows: {csv_path}\nsummary:  {csv_path.replace('.csv', '.summary.csv')}\n"
        f"table:    {md_path}\nwrk logs: {logdir}")
    bad = [s for s in summary if s["errors_total"]]
    if bad:
        log("WARNING: errors in " + ", ".join(f"{s['proxy']}/{s['scenario']}" for s in bad))
    return 0


if __name__ == "__main__":
    sys.exit(main())
