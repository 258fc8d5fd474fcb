#!/usr/bin/env python3
"""zoo against nginx, per scenario, checked against issue 7's targets.

    python3 bench/lib/targets.py bench/results/<run>.summary.csv

Prints the markdown table (also appended to every run's report by
lib/bench.py). Ratios are medians of per-round ratios measured in the same
run (the summary CSV's rps_vs_nginx / cpu_vs_nginx / p50_vs_nginx), RSS is
the max over rounds.
"""
from __future__ import annotations

import csv
import sys

# scenario -> (req/s vs nginx at least, CPU vs nginx at most, p50 vs nginx at most)
TARGETS = {
    "small-keepalive": (1.0, 0.9, None),
    "big-1MiB": (1.0, 0.8, None),
    "small-close": (1.0, None, None),
    "upload-1MiB": (None, 1.0, None),
    "websocket-echo": (1.0, None, None),
    "sse": (None, None, 1.0),
}


def _f(x):
    return float(x) if x not in ("", None, "None") else None


def table(summary: list[dict]) -> str:
    idx = {(r["scenario"], r["proxy"]): r for r in summary}
    scen = [s for s in TARGETS if (s, "nginx") in idx]
    L = ["| scenario | zoo req/s vs nginx | zoo CPU/req vs nginx | zoo p50 vs nginx "
         "| zoo / nginx peak RSS MiB | zoo errors | targets (issue 7) | met |",
         "|---|---:|---:|---:|---:|---:|---|---|"]
    for s in scen:
        z, n = idx.get((s, "zoo")), idx[(s, "nginx")]
        rps_t, cpu_t, p50_t = TARGETS[s]
        want = []
        if rps_t:
            want.append(f"req/s >= {rps_t:g}x")
        if cpu_t:
            want.append(f"CPU <= {cpu_t:g}x")
        if p50_t:
            want.append(f"first-byte p50 <= {p50_t:g}x")
        want.append("RSS <= nginx, 0 errors")
        if z is None:
            L.append(f"| {s} | pending | pending | pending | - / {_f(n['proxy_peak_rss_mib']):.1f} "
                     f"| - | {', '.join(want)} | pending |")
            continue
        rps, cpu, p50 = _f(z["rps_vs_nginx"]), _f(z["cpu_vs_nginx"]), _f(z["p50_vs_nginx"]) \
            if "p50_vs_nginx" in z else None
        zr, nr = _f(z["proxy_peak_rss_mib"]), _f(n["proxy_peak_rss_mib"])
        errs = int(float(z["errors_total"]))
        ok = [errs == 0, zr is not None and nr is not None and zr <= nr]
        if rps_t:
            ok.append(rps is not None and rps >= rps_t)
        if cpu_t:
            ok.append(cpu is not None and cpu <= cpu_t)
        if p50_t:
            ok.append(p50 is not None and p50 <= p50_t)
        fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        L.append(f"| {s} | {fmt(rps)} | {fmt(cpu)} | {fmt(p50)} | {zr:.1f} / {nr:.1f} | {errs} "
                 f"| {', '.join(want)} | {'yes' if all(ok) else 'NO'} |")
    return "\n".join(L)


if __name__ == "__main__":
    print(table(list(csv.DictReader(open(sys.argv[1])))))
