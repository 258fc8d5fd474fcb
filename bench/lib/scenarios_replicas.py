"""The benchmark of issue 18: zoo balancing one app's `replicas = 2` against nginx's
`upstream { least_conn; }`, over the same two upstream processes.

Run with `bench/run.sh --suite replicas [nginx] [zoo] [zoo-rr]` (lib/bench.py hands over
here). Both proxies balance over two upstream processes: nginx instances
(conf/upstream-replica-nginx.conf, one worker each) on UPSTREAM_PORTS, pinned to the load core
with wrk, fresh for each measurement:

- nginx: conf/nginx-replicas.conf, `least_conn` over both, with a shared `zone`; the harness
  starts the two upstreams;
- zoo: conf/zoo-replicas.toml, an app with `replicas = 2` on the same two ports whose
  command execs the same nginx with the same config (re-pinned to the load core), `balance
  = "least_requests"` (zoo's default); `zoo-rr` is the same with `"round_robin"`.

zoo cannot balance over processes the harness started: it refuses to start an instance on a
port another process holds ("port 9010 is already taken by pid ..."), and an instance is a
process zoo starts. So "the same two" means the same binary, config, ports and core, started
fresh in both cases. The proxy's CPU is its process tree's without the upstreams' subtrees
(for zoo, its two children).

Each measurement starts the proxy, waits until GET /small answers 200 and both instances
answer through it, runs wrk (warm-up, then measured), and reads each upstream's request
counter (stub_status on its own port) before and after the measured run: the per-instance
counts give the spread. The proxy order rotates each round; the summary gives medians, and
ratios against nginx in the same round.
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import statistics
import subprocess
import time

import bench as B

UPSTREAM_PORTS = {"a": 9010, "b": 9011}
PORTS = {"nginx": 8301, "zoo": 8305, "zoo-rr": 8306}
PROXIES = ["nginx", "zoo", "zoo-rr"]
BALANCE = {"zoo": "least_requests", "zoo-rr": "round_robin"}
SCENARIOS = [
    {"name": "replicas-small", "path": "/small", "conns": 50, "headers": [], "lua": None,
     "desc": "GET /small (100 bytes), keep-alive, wrk -t1 -c50, balanced over 2 upstreams"},
]
# issue 18: zoo req/s >= nginx's, CPU per request <= nginx's, spread within 10 %.
SPREAD_TARGET = 0.10


def render_upstreams() -> None:
    """One upstream config per instance, in replica-<port>/ (zoo's app command finds its
    instance's config by $PORT)."""
    for name, port in UPSTREAM_PORTS.items():
        run = os.path.join(B.RUN, f"replica-{port}")
        os.makedirs(os.path.join(run, "tmp"), exist_ok=True)
        B.render("upstream-replica-nginx.conf", os.path.join(run, "nginx.conf"),
                 RUN=run, PORT=port, NAME=name)


def upstream_command(port: int) -> list[str]:
    run = os.path.join(B.RUN, f"replica-{port}")
    return ["nginx", "-p", run + "/", "-e", os.path.join(run, "error.log"),
            "-c", os.path.join(run, "nginx.conf")]


def wait_ports_closed() -> None:
    deadline = time.monotonic() + 10
    while any(B.port_open(p) for p in UPSTREAM_PORTS.values()):
        if time.monotonic() > deadline:
            raise B.BenchError(f"upstream ports {list(UPSTREAM_PORTS.values())} still open")
        time.sleep(0.05)


def requests_served() -> dict[str, int]:
    """Each upstream's own count of the requests it has read (stub_status), this read
    included."""
    out = {}
    for name, port in UPSTREAM_PORTS.items():
        st, _, body = B.http_request(port, "GET", "/__requests")
        m = re.search(rb"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$", body, re.M)
        if st != 200 or not m:
            raise B.BenchError(f"upstream {name}: /__requests -> {st} {body[:80]!r}")
        out[name] = int(m.group(3))
    return out


def command(name: str, port: int, load_cpus: str | None) -> list[str]:
    run = os.path.join(B.RUN, f"replicas-{name}")
    os.makedirs(os.path.join(run, "tmp"), exist_ok=True)
    a, b = UPSTREAM_PORTS["a"], UPSTREAM_PORTS["b"]
    if name == "nginx":
        conf = B.render("nginx-replicas.conf", os.path.join(run, "nginx.conf"), RUN=run,
                        PORT=port, UPSTREAM_A=f"127.0.0.1:{a}", UPSTREAM_B=f"127.0.0.1:{b}")
        return ["nginx", "-p", run + "/", "-e", os.path.join(run, "error.log"), "-c", conf]
    conf = B.render("zoo-replicas.toml", os.path.join(run, "zoo.toml"), PORT=port,
                    PORT_A=a, PORT_B=b, BALANCE=BALANCE[name], RUN=B.RUN,
                    PIN=f"taskset -c {load_cpus}" if load_cpus else "")
    return [shlex.split(os.environ["ZOO_CMD"])[0], "--config", conf]


def check(port: int, name: str) -> None:
    """Both instances answer through the proxy, with the exact /small body."""
    seen = set()
    for _ in range(20):
        st, hdrs, body = B.http_request(port, "GET", "/small")
        if st != 200 or len(body) != B.SMALL_SIZE:
            raise B.BenchError(f"{name}: GET /small -> {st}, {len(body)} bytes")
        seen.add(hdrs.get("x-bench-instance"))
    if seen != set(UPSTREAM_PORTS):
        raise B.BenchError(f"{name}: 20 requests reached instances {sorted(map(str, seen))}")


def start(name: str, args) -> tuple[subprocess.Popen, list[subprocess.Popen]]:
    """The proxy under test and, for nginx, the two upstream instances the harness starts
    (fresh for each measurement, as zoo's are)."""
    for port in [PORTS[name], *UPSTREAM_PORTS.values()]:
        if B.port_open(port):
            raise B.BenchError(f"port {port} (for {name}) is already in use")
    upstreams = []
    if name == "nginx":
        for inst, port in UPSTREAM_PORTS.items():
            upstreams.append(B.spawn(f"replica-{inst}", upstream_command(port), args.load_cpus))
            B.wait_ready(upstreams[-1], port, f"replica-{inst}")
    return B.spawn(name, command(name, PORTS[name], args.load_cpus), args.proxy_cpus), upstreams


def cpu_ticks(proxy: int, upstream_roots: list[int]) -> tuple[int, int]:
    """(the proxy's CPU ticks without its upstream children's, the upstreams' ticks)."""
    ticks = {p: B.tree_cpu_ticks(p) for p in upstream_roots}
    inside = set(B.proc_tree(proxy))
    own = B.tree_cpu_ticks(proxy) - sum(t for p, t in ticks.items() if p in inside)
    return own, sum(ticks.values())


def measure(name: str, sc: dict, rnd: int, args, logpath: str) -> dict:
    port = PORTS[name]
    proc, upstreams = start(name, args)
    try:
        B.wait_ready(proc, port, name)
        check(port, name)
        # zoo's instances are its direct children; nginx's upstreams are the harness's.
        roots = ([p.pid for p in upstreams] if upstreams else
                 [p for p in B.proc_tree(proc.pid) if p != proc.pid
                  and int(B._stat_fields(p)[1]) == proc.pid])
        if len(roots) != len(UPSTREAM_PORTS):
            raise B.BenchError(f"{name}: {len(roots)} upstream processes, want 2")
        B.run_wrk(port, sc, args.warmup, args.load_cpus, logpath)
        n0, (c0, u0) = requests_served(), cpu_ticks(proc.pid, roots)
        s0 = B.cpu_times()
        res = B.run_wrk(port, sc, args.duration, args.load_cpus, logpath)
        s1 = B.cpu_times()
        (c1, u1), n1 = cpu_ticks(proc.pid, roots), requests_served()
        if proc.poll() is not None:
            raise B.BenchError(f"{name} died during the run (code {proc.returncode})")
    finally:
        B.stop(proc)
        for p in upstreams:
            B.stop(p)
    wait_ports_closed()
    reqs = res["requests"]
    # minus 1: the second read of the counter counts itself
    counts = {k: n1[k] - n0[k] - 1 for k in UPSTREAM_PORTS}
    total = sum(counts.values())
    busy = B.busy_pct(s0, s1)
    return {"round": rnd, "scenario": sc["name"], "proxy": name,
            "rps": reqs / (res["duration_us"] / 1e6), "p50_ms": res["p50_us"] / 1000,
            "p99_ms": res["p99_us"] / 1000,
            "cpu_ms_per_1k": (c1 - c0) / B.CLK_TCK * 1e6 / max(reqs, 1),
            "upstream_cpu_ms_per_1k": (u1 - u0) / B.CLK_TCK * 1e6 / max(reqs, 1),
            "count_a": counts["a"], "count_b": counts["b"],
            "spread": abs(counts["a"] - counts["b"]) / total if total else None,
            "counted_vs_wrk": total / reqs if reqs else None,
            "errors": sum(int(res[k]) for k in ("err_connect", "err_read", "err_write",
                                                "err_status", "err_timeout")),
            **{f"{cpu}_busy": busy[cpu] for cpu in sorted(busy)}}


def summary(rows: list[dict], proxies: list[str]) -> list[str]:
    def of(sc, px):
        return [r for r in rows if (r["scenario"], r["proxy"]) == (sc, px)]

    def median(sc, px, field):
        vals = [r[field] for r in of(sc, px) if r[field] is not None]
        return statistics.median(vals) if vals else None

    def vs_nginx(sc, px, field):
        vals = []
        for r in of(sc, px):
            ref = [x for x in of(sc, "nginx") if x["round"] == r["round"]]
            if ref and ref[0][field]:
                vals.append(r[field] / ref[0][field])
        return statistics.median(vals) if vals else None

    cell = lambda x, f: "-" if x is None else f.format(x)  # noqa: E731
    out = ["| scenario | proxy | req/s | vs nginx | p50 ms | p99 ms | proxy CPU ms/1k req "
           "| CPU vs nginx | upstream CPU ms/1k | requests a / b (per round) | spread (max) "
           "| counted / wrk | core0 / core1 busy % | errors |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    verdicts = []
    for sc in SCENARIOS:
        for px in proxies:
            rs = of(sc["name"], px)
            if not rs:
                continue
            spreads = [r["spread"] for r in rs if r["spread"] is not None]
            counts = ", ".join(f"{r['count_a']:,} / {r['count_b']:,}" for r in rs)
            out.append(
                f"| {sc['name']} | {px} | {cell(median(sc['name'], px, 'rps'), '{:,.0f}')} "
                f"| {cell(vs_nginx(sc['name'], px, 'rps'), '{:.2f}')} "
                f"| {cell(median(sc['name'], px, 'p50_ms'), '{:.2f}')} "
                f"| {cell(median(sc['name'], px, 'p99_ms'), '{:.2f}')} "
                f"| {cell(median(sc['name'], px, 'cpu_ms_per_1k'), '{:.1f}')} "
                f"| {cell(vs_nginx(sc['name'], px, 'cpu_ms_per_1k'), '{:.2f}')} "
                f"| {cell(median(sc['name'], px, 'upstream_cpu_ms_per_1k'), '{:.1f}')} "
                f"| {counts} | {cell(max(spreads) if spreads else None, '{:.1%}')} "
                f"| {cell(median(sc['name'], px, 'counted_vs_wrk'), '{:.3f}')} "
                f"| {cell(median(sc['name'], px, 'cpu0_busy'), '{:.0f}')} / "
                f"{cell(median(sc['name'], px, 'cpu1_busy'), '{:.0f}')} "
                f"| {sum(r['errors'] for r in rs)} |")
            if px.startswith("zoo") and of(sc["name"], "nginx"):
                rps, cpu = vs_nginx(sc["name"], px, "rps"), vs_nginx(sc["name"], px, "cpu_ms_per_1k")
                met = [rps is not None and rps >= 1.0, cpu is not None and cpu <= 1.0,
                       bool(spreads) and max(spreads) <= SPREAD_TARGET]
                verdicts.append(f"| {sc['name']} | {px} | {cell(rps, '{:.2f}')} "
                                f"{'yes' if met[0] else 'NO'} | {cell(cpu, '{:.2f}')} "
                                f"{'yes' if met[1] else 'NO'} | "
                                f"{cell(max(spreads) if spreads else None, '{:.1%}')} "
                                f"{'yes' if met[2] else 'NO'} |")
    if verdicts:
        out += ["", "Issue 18's targets (req/s vs nginx >= 1.00, CPU/req vs nginx <= 1.00, "
                f"spread <= {SPREAD_TARGET:.0%} in every round):", "",
                "| scenario | proxy | req/s vs nginx | CPU/req vs nginx | spread (max) |",
                "|---|---|---|---|---|", *verdicts]
    return out


def main(args, wanted: list[str]) -> int:
    """Entry from lib/bench.py's `--suite replicas`."""
    proxies = [p for p in PROXIES if p in (wanted or ["nginx", "zoo", "zoo-rr"])]
    if any(p.startswith("zoo") for p in proxies) and not os.environ.get("ZOO_CMD"):
        B.log("replicas: no ZOO_CMD (cargo build --release): the zoo rows are skipped")
        proxies = [p for p in proxies if not p.startswith("zoo")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = os.path.join(B.BUILD, "logs", stamp)
    os.makedirs(logdir, exist_ok=True)
    os.makedirs(B.RUN, exist_ok=True)
    rows, loads = [], []
    try:
        render_upstreams()
        rows, loads = B.run_rounds(args.rounds, SCENARIOS, proxies, logdir,
                                   lambda px, sc, rnd, logpath: measure(px, sc, rnd, args, logpath))
    except B.BenchError as e:
        B.log(f"ERROR: {e}")
        return 1
    finally:
        B.stop_all()
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    zoo_v = (f", zoo: {shlex.split(os.environ['ZOO_CMD'])[0]}"
             if any(p.startswith("zoo") for p in proxies) else "")
    pin = (f"proxy on cpu {args.proxy_cpus}; wrk and both upstream instances on cpu "
           f"{args.load_cpus}" if args.proxy_cpus else "none (--no-pin)")
    md = [f"# Replicas: zoo `replicas = 2` vs nginx `least_conn`, {stamp} on "
          f"{socket.gethostname()}", "",
          f"- {args.rounds} round(s), {args.warmup} s warm-up + {args.duration} s measured, "
          "fresh proxy per measurement, order rotating; medians over rounds",
          f"- two upstream nginx processes (1 worker each, fresh per measurement: the harness starts them for nginx, zoo as its instances) on 127.0.0.1:{UPSTREAM_PORTS['a']} "
          f"(a) and :{UPSTREAM_PORTS['b']} (b), the same binary and config for every row; pinning: {pin}",
          f"- 1-minute load average at each measurement: min {min(loads):.1f}, median "
          f"{statistics.median(loads):.1f}, max {max(loads):.1f} (2 cores, shared machine)",
          f"- {nginx_v.removeprefix('nginx version: ')}{zoo_v}",
          "- spread = |a - b| / (a + b) of the requests each upstream counted in the "
          "measured window (stub_status); counted / wrk = (a + b) / wrk's requests", "",
          *summary(rows, proxies), ""]
    B.write_suite_results(args.results_dir, stamp, "replicas", md, rows)
    return 0
