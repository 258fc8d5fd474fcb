"""The scenarios of issue 19's second table: TLS, HTTP/2 and idle resources.

Run with `bench/run.sh --suite tls [nginx] [zoo] [zoo-b]` (lib/bench.py hands
over here). The same upstream nginx and lib/streamer.py as the main suite;
every measurement starts a fresh proxy configured for its scenario
(conf/nginx-tls.conf, conf/zoo-tls.toml); the proxy order rotates each round
and the summary gives medians of per-round ratios against nginx.

Scenarios:
- https-keepalive-{ecdsa,rsa}: wrk -t1 -c50 over TLS 1.3, keep-alive.
- handshake-{ecdsa,rsa}: 4 parallel `openssl s_time -new -www /small`: a full
  TLS 1.3 handshake and one HTTP/1.0 GET per connection. Not wrk: wrk's
  SSL_clear() keeps the session, so with `Connection: close` it resumes
  wherever the server allows it (zoo: 0.46 ms of zoo CPU per connection, as
  `s_time -reuse`'s 0.57, against 1.44 with `-new`), while nginx here has its
  cache and tickets off. req/s = handshakes/s; s_time gives no latency (p50
  column empty).
- h2-tls, h2c: h2load -c10 -m10 (ALPN h2 / prior knowledge). nginx needs its
  own h2c-only port kind; zoo serves both on its one port. h2load gives no
  p50: its mean request time is in the p50 column.
- idle-keepalive: IDLE_CONNS connections each make one GET /small and stay
  open; proxy RSS per connection (KiB), then RSS after they all closed
  relative to the start, over IDLE_CYCLES cycles.
- idle-tunnels: IDLE_TUNNELS WebSockets each echo one message and stay open;
  proxy descriptors and RSS per tunnel.
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import ssl
import statistics
import subprocess
import time

import bench as B

CERTS = os.path.join(B.BUILD, "tls")
PORTS = {"nginx": 8201, "zoo": 8205, "zoo-b": 8206}
PROXIES = ["nginx", "zoo", "zoo-b"]
IDLE_CONNS = int(os.environ.get("BENCH_IDLE_CONNS", 10000))
IDLE_CYCLES = int(os.environ.get("BENCH_IDLE_CYCLES", 3))
IDLE_TUNNELS = int(os.environ.get("BENCH_IDLE_TUNNELS", 2000))

# kind: how the proxy listens (tls-ecdsa, tls-rsa, plain, h2c); load: the driver.
SCENARIOS = [
    {"name": "https-keepalive-ecdsa", "kind": "tls-ecdsa", "load": "wrk", "conns": 50,
     "headers": []},
    {"name": "https-keepalive-rsa", "kind": "tls-rsa", "load": "wrk", "conns": 50,
     "headers": []},
    {"name": "handshake-ecdsa", "kind": "tls-ecdsa", "load": "s_time", "conns": 4},
    {"name": "handshake-rsa", "kind": "tls-rsa", "load": "s_time", "conns": 4},
    {"name": "h2-tls", "kind": "tls-ecdsa", "load": "h2load"},
    {"name": "h2c", "kind": "h2c", "load": "h2load"},
    {"name": "idle-keepalive", "kind": "plain", "load": "idle"},
    {"name": "idle-tunnels", "kind": "plain", "load": "tunnels"},
]


def make_certs() -> None:
    """A self-signed certificate for 127.0.0.1/localhost per key type."""
    os.makedirs(CERTS, exist_ok=True)
    keys = {"ecdsa": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "rsa": ["-newkey", "rsa:2048"]}
    for name, newkey in keys.items():
        cert, key = (os.path.join(CERTS, f"{name}.{ext}") for ext in ("crt", "key"))
        if os.path.exists(cert) and os.path.exists(key):
            continue
        subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "3650", *newkey,
                        "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)


def zoo_binary(name: str) -> str:
    return shlex.split(os.environ["ZOO_CMD" if name == "zoo" else "ZOO_B_CMD"])[0]


def command(name: str, kind: str, port: int) -> list[str]:
    run = os.path.join(B.RUN, f"tls-{name}")
    os.makedirs(os.path.join(run, "tmp"), exist_ok=True)
    key_type = kind.removeprefix("tls-")
    cert, key = (os.path.join(CERTS, f"{key_type}.{ext}") for ext in ("crt", "key"))
    tls = kind.startswith("tls-")
    if name == "nginx":
        listen = {"plain": "", "h2c": "http2"}.get(kind, "ssl http2")
        ssl_lines = (f"ssl_certificate {cert}; ssl_certificate_key {key}; "
                     "ssl_protocols TLSv1.3; ssl_session_cache off; "
                     "ssl_session_tickets off;") if tls else ""
        conf = B.render("nginx-tls.conf", os.path.join(run, "nginx.conf"), RUN=run,
                        PORT=port, UPSTREAM=B.UPSTREAM, LISTEN=listen, SSL=ssl_lines)
        return ["nginx", "-p", run + "/", "-e", os.path.join(run, "error.log"), "-c", conf]
    tls_line = f'tls = {{ cert = "{cert}", key = "{key}" }}' if tls else ""
    conf = B.render("zoo-tls.toml", os.path.join(run, "zoo.toml"), PORT=port,
                    UPSTREAM=B.UPSTREAM, TLS=tls_line)
    return [zoo_binary(name), "--config", conf]


def ready(port: int, kind: str, proc, name: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise B.BenchError(f"{name} exited ({proc.returncode}):" + B.log_tail(name))
        try:
            if kind == "h2c":
                out = subprocess.run(["h2load", "-n1", "-c1", f"http://127.0.0.1:{port}/small"],
                                     capture_output=True, text=True, timeout=5).stdout
                if "1 succeeded" in out:
                    return
            else:
                with connect(port, kind) as s:
                    s.sendall(b"GET /small HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                    if s.recv(12).startswith(b"HTTP/1.1 200"):
                        return
        except (OSError, subprocess.TimeoutExpired):
            pass
        time.sleep(0.05)
    raise B.BenchError(f"{name} not ready on {port} ({kind})")


def connect(port: int, kind: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if kind.startswith("tls-"):
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname="localhost")
    return s


def h2load(port: int, kind: str, seconds: int, cpus: str | None, logpath: str) -> dict:
    scheme = "https" if kind.startswith("tls-") else "http"
    cmd = ["h2load", "-c10", "-m10", "-t1", f"-D{seconds}", f"{scheme}://127.0.0.1:{port}/small"]
    if cpus:
        cmd = ["taskset", "-c", cpus] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    with open(logpath, "a") as f:
        f.write(f"$ {shlex.join(cmd)}\n{out}\n")
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    rate = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out)
    if not (done and rate and mean):
        raise B.BenchError(f"h2load failed: {out[-400:]}")
    scale = {"us": 1, "ms": 1e3, "s": 1e6}[mean.group(2)]
    return {"requests": int(done.group(2)), "duration_us": float(rate.group(1)) * 1e6,
            "p50_us": float(mean.group(1)) * scale,
            "errors": int(done.group(3)) + int(done.group(4)) + int(done.group(5))}


def wrk(port: int, sc: dict, seconds: int, cpus: str | None, logpath: str) -> dict:
    cmd = ["wrk", "-t1", f"-c{sc['conns']}", f"-d{seconds}s", "--latency", "--timeout", "5s",
           "-s", B.wrk_script(dict(sc, lua=None))]
    for h in sc["headers"]:
        cmd += ["-H", h]
    cmd.append(f"https://127.0.0.1:{port}/small")
    if cpus:
        cmd = ["taskset", "-c", cpus] + cmd
    res = B._run_load(cmd, seconds, logpath)
    res["errors"] = sum(int(res[k]) for k in ("err_connect", "err_read", "err_write",
                                              "err_status", "err_timeout"))
    return res


def s_time(port: int, sc: dict, seconds: int, cpus: str | None, logpath: str) -> dict:
    cmd = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds),
           "-www", "/small"]
    if cpus:
        cmd = ["taskset", "-c", cpus] + cmd
    t0 = time.monotonic()
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(sc["conns"])]
    outs = [run.communicate(timeout=seconds + 60)[0] for run in runs]
    wall = time.monotonic() - t0
    with open(logpath, "a") as f:
        f.write(f"$ {sc['conns']} x {shlex.join(cmd)}\n" + "\n".join(outs) + "\n")
    counts = [re.search(r"(\d+) connections in [\d.]+ real seconds", out) for out in outs]
    if not all(counts):
        raise B.BenchError(f"s_time failed: {outs[0][-400:]}")
    return {"requests": sum(int(m.group(1)) for m in counts), "duration_us": wall * 1e6,
            "p50_us": None, "errors": sum(out.count("ERROR") for out in outs)}


def tree_rss_kib(root: int) -> int:
    total = 0
    for pid in B.proc_tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def tree_fds(root: int) -> int:
    total = 0
    for pid in B.proc_tree(root):
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return total


def settle(root: int) -> int:
    """The tree's RSS once it stopped changing (freed memory may be returned late)."""
    last = tree_rss_kib(root)
    for _ in range(20):
        time.sleep(0.25)
        now = tree_rss_kib(root)
        if abs(now - last) < 64:
            return now
        last = now
    return last


def recv_until(s: socket.socket, done, what: str, step: int = 4096) -> bytes:
    """Reads from `s` until done(bytes so far); `step` 1 reads no byte past a head."""
    got = b""
    while not done(got):
        chunk = s.recv(step)
        if not chunk:
            raise B.BenchError(f"{what}: closed after {got[:60]!r}")
        got += chunk
    return got


def one_request(s: socket.socket) -> None:
    s.sendall(b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n")
    got = recv_until(s, lambda got: b"\r\n\r\n" in got
                     and len(got.split(b"\r\n\r\n", 1)[1]) >= B.SMALL_SIZE, "idle-keepalive")
    if not got.startswith(b"HTTP/1.1 200"):
        raise B.BenchError(f"idle-keepalive: {got[:60]!r}")


def idle_keepalive(port: int, root: int) -> dict:
    start = settle(root)
    per_conn, after = [], []
    for _ in range(IDLE_CYCLES):
        conns = []
        for _ in range(IDLE_CONNS):
            s = connect(port, "plain")
            one_request(s)
            conns.append(s)
        held = settle(root)
        per_conn.append((held - start) / IDLE_CONNS)
        for s in conns:
            s.close()
        # Longer than zoo's wait for a wave of closes to end: two 2 s looks at its
        # connection count (src/proxy/heap.rs).
        time.sleep(5)
        after.append(settle(root))
    return {"kib_per_conn": statistics.median(per_conn),
            "kib_per_conn_waves": [round(k, 1) for k in per_conn], "start_mib": start / 1024,
            "after_mib": [round(a / 1024, 1) for a in after],
            "after_vs_start": after[-1] / start if start else None}


def ws_open(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = recv_until(s, lambda got: got.endswith(b"\r\n\r\n"), "idle-tunnels", step=1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise B.BenchError(f"idle-tunnels: {head[:60]!r}")
    # One masked 5-byte text frame, and its echo (unmasked: 2 + 5 bytes).
    mask = b"\x01\x02\x03\x04"
    s.sendall(b"\x81\x85" + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(b"hello")))
    echo = recv_until(s, lambda got: len(got) >= 7, "idle-tunnels echo", step=7)
    if echo != b"\x81\x05hello":
        raise B.BenchError(f"idle-tunnels: echo {echo!r}")
    return s


def idle_tunnels(port: int, root: int) -> dict:
    rss0, fds0 = settle(root), tree_fds(root)
    tunnels = [ws_open(port) for _ in range(IDLE_TUNNELS)]
    rss1, fds1 = settle(root), tree_fds(root)
    for s in tunnels:
        s.close()
    return {"fds_per_tunnel": (fds1 - fds0) / IDLE_TUNNELS,
            "kib_per_tunnel": (rss1 - rss0) / IDLE_TUNNELS,
            "fd_limit_20000_tunnels": int(20000 / ((fds1 - fds0) / IDLE_TUNNELS))}


def measure(name: str, sc: dict, rnd: int, args, logpath: str) -> dict:
    port = PORTS[name]
    if B.port_open(port):
        raise B.BenchError(f"port {port} (for {name}) is already in use")
    proc = B.spawn(name, command(name, sc["kind"], port), args.proxy_cpus)
    try:
        ready(port, sc["kind"], proc, name)
        row = {"round": rnd, "scenario": sc["name"], "proxy": name}
        if sc["load"] in ("idle", "tunnels"):
            row.update((idle_keepalive if sc["load"] == "idle" else idle_tunnels)(port, proc.pid))
            return row
        def load(seconds: int) -> dict:
            if sc["load"] in ("wrk", "s_time"):
                drive = wrk if sc["load"] == "wrk" else s_time
                return drive(port, sc, seconds, args.load_cpus, logpath)
            return h2load(port, sc["kind"], seconds, args.load_cpus, logpath)
        load(args.warmup)
        c0 = B.tree_cpu_ticks(proc.pid)
        res = load(args.duration)
        c1 = B.tree_cpu_ticks(proc.pid)
        secs = res["duration_us"] / 1e6
        p50 = res["p50_us"] / 1000 if res["p50_us"] is not None else None
        row.update({"rps": res["requests"] / secs, "p50_ms": p50,
                    "cpu_ms_per_1k": (c1 - c0) / B.CLK_TCK * 1e6 / max(res["requests"], 1),
                    "errors": res["errors"]})
        return row
    finally:
        B.stop(proc)


def summary(rows: list[dict], proxies: list[str]) -> list[str]:
    def ratio(sc, px, field):
        vals = []
        for r in rows:
            if (r["scenario"], r["proxy"]) != (sc, px):
                continue
            ref = [x for x in rows if (x["scenario"], x["proxy"], x["round"]) ==
                   (sc, "nginx", r["round"])]
            if ref and ref[0].get(field) and r[field] is not None:
                vals.append(r[field] / ref[0][field])
        return f"{statistics.median(vals):.2f}" if vals else "-"

    def median(sc, px, field, fmt="{:.1f}"):
        vals = [r[field] for r in rows
                if (r["scenario"], r["proxy"]) == (sc, px) and r[field] is not None]
        return fmt.format(statistics.median(vals)) if vals else "-"

    loaded = any(r["scenario"] == sc["name"] for sc in SCENARIOS for r in rows
                 if sc["load"] not in ("idle", "tunnels"))
    out = ["| scenario | proxy | req/s | vs nginx | p50 ms | p50 vs nginx "
           "| CPU ms/1k | CPU vs nginx | errors |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"] if loaded else []
    for sc in SCENARIOS:
        if sc["load"] in ("idle", "tunnels") or not any(r["scenario"] == sc["name"] for r in rows):
            continue
        for px in proxies:
            errs = sum(r["errors"] for r in rows if (r["scenario"], r["proxy"]) == (sc["name"], px))
            out.append(f"| {sc['name']} | {px} | {median(sc['name'], px, 'rps', '{:,.0f}')} "
                       f"| {ratio(sc['name'], px, 'rps')} | {median(sc['name'], px, 'p50_ms', '{:.2f}')} "
                       f"| {ratio(sc['name'], px, 'p50_ms')} | {median(sc['name'], px, 'cpu_ms_per_1k')} "
                       f"| {ratio(sc['name'], px, 'cpu_ms_per_1k')} | {errs} |")
    out += ["", f"Idle keep-alive connections ({IDLE_CONNS}, {IDLE_CYCLES} cycles) and idle "
            f"WebSocket tunnels ({IDLE_TUNNELS}), last round:", "",
            "| proxy | KiB per idle conn | RSS start MiB | RSS after each close MiB "
            "| after/start | fds per tunnel | KiB per tunnel | tunnels at 20,000 fds |",
            "|---|---:|---:|---|---:|---:|---:|---:|"]
    for px in proxies:
        idle = [r for r in rows if (r["scenario"], r["proxy"]) == ("idle-keepalive", px)]
        tun = [r for r in rows if (r["scenario"], r["proxy"]) == ("idle-tunnels", px)]
        i, t = (idle[-1] if idle else {}), (tun[-1] if tun else {})
        cell = lambda d, k, f: f.format(d[k]) if k in d and d[k] is not None else "-"  # noqa: E731
        out.append(f"| {px} | {cell(i, 'kib_per_conn', '{:.2f}')} | {cell(i, 'start_mib', '{:.1f}')} "
                   f"| {cell(i, 'after_mib', '{}')} | {cell(i, 'after_vs_start', '{:.2f}')} "
                   f"| {cell(t, 'fds_per_tunnel', '{:.2f}')} | {cell(t, 'kib_per_tunnel', '{:.1f}')} "
                   f"| {cell(t, 'fd_limit_20000_tunnels', '{:,}')} |")
    return out


def main(args, wanted: list[str]) -> int:
    """Entry from lib/bench.py's `--suite tls`."""
    proxies = [p for p in PROXIES if p in (wanted or ["nginx", "zoo"])]
    scenarios = SCENARIOS
    if args.scenarios:
        scenarios = [s for s in SCENARIOS if s["name"] in args.scenarios.split(",")]
    make_certs()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = os.path.join(B.BUILD, "logs", stamp)
    os.makedirs(logdir, exist_ok=True)
    os.makedirs(B.RUN, exist_ok=True)
    B.make_data()
    updir = os.path.join(B.RUN, "upstream")
    os.makedirs(os.path.join(updir, "tmp"), exist_ok=True)
    upconf = B.render("upstream-nginx.conf", os.path.join(updir, "nginx.conf"),
                      RUN=updir, DATA=B.DATA)
    rows, loads = [], []
    try:
        upstream = B.spawn("upstream", ["nginx", "-p", updir + "/", "-e",
                                        os.path.join(updir, "error.log"), "-c", upconf],
                           args.load_cpus)
        B.wait_ready(upstream, B.UPSTREAM_PORT, "upstream")
        debian_py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else "python3"
        B.spawn("streamer", [debian_py, os.path.join(B.HERE, "streamer.py"),
                             str(B.STREAMER_WS_PORT), str(B.STREAMER_SSE_PORT)], args.load_cpus)
        rows, loads = B.run_rounds(args.rounds, scenarios, proxies, logdir,
                                   lambda px, sc, rnd, logpath: measure(px, sc, rnd, args, logpath))
    except B.BenchError as e:
        B.log(f"ERROR: {e}")
        return 1
    finally:
        B.stop_all()
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    versions = [nginx_v.strip().removeprefix("nginx version: ")]
    versions += [f"{px}: {zoo_binary(px)}" for px in proxies if px != "nginx"]
    md = [f"# TLS, HTTP/2 and idle-resource scenarios, {stamp} on {socket.gethostname()}", "",
          f"- {args.rounds} round(s), {args.warmup} s warm-up + {args.duration} s measured; "
          f"pinning: proxy on cpu {args.proxy_cpus}, load + upstream on cpu {args.load_cpus}",
          f"- 1-minute load average at each measurement: min {min(loads):.1f}, "
          f"median {statistics.median(loads):.1f}, max {max(loads):.1f} (2 cores, shared machine)",
          f"- {', '.join(versions)}", "", *summary(rows, proxies), ""]
    B.write_suite_results(args.results_dir, stamp, "tls", md, rows)
    return 0
