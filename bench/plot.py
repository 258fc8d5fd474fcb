#!/usr/bin/env python3
"""Plot zoo/nginx ratios per scenario from a results summary CSV.

    PYTHONPATH=/tmp/bench-build/plotdeps python3 bench/plot.py \
        bench/results/<run>.summary.csv docs/performance-ratios.png

(matplotlib is not a dependency of the harness: install it into a scratch
dir, e.g. `pip install --target /tmp/bench-build/plotdeps matplotlib`.)
Two bars per scenario: zoo's req/s / nginx's and zoo's proxy CPU per request
/ nginx's (both medians of per-round ratios in the same run). Above 1.0 is
better for req/s, below 1.0 better for CPU.
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, out: str) -> None:
    allrows = list(csv.DictReader(open(src)))
    names = [r["scenario"] for r in allrows if r["proxy"] == "nginx"]
    zoo = {r["scenario"]: r for r in allrows if r["proxy"] == "zoo"}

    def val(sc, key):
        r = zoo.get(sc)
        return float(r[key]) if r and r.get(key) else 0

    rps = [val(sc, "rps_vs_nginx") for sc in names]
    cpu = [val(sc, "cpu_vs_nginx") for sc in names]
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    w = 0.38
    b1 = ax.bar([i - w / 2 for i in x], rps, w, label="req/s vs nginx (higher is better)",
                color="#3b7dd8")
    b2 = ax.bar([i + w / 2 for i in x], cpu, w, label="proxy CPU/request vs nginx (lower is better)",
                color="#e08a2e")
    for bars in (b1, b2):
        for b in bars:
            h = b.get_height()
            ax.annotate("pending" if h == 0 else f"{h:.2f}", (b.get_x() + b.get_width() / 2, h),
                        ha="center", va="bottom", fontsize=8)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, fontsize=9)
    ax.set_ylabel("zoo / nginx (same run, median of rounds)")
    ax.set_title("zoo vs nginx per scenario (" + src.rsplit("/", 1)[-1].split(".")[0] + ")")
    ax.legend(fontsize=8, loc="upper left")
    for i, sc in enumerate(names):
        if sc == "sse" and sc in zoo and zoo[sc].get("p50_vs_nginx"):
            p50 = float(zoo[sc]["p50_vs_nginx"])
            ax.annotate(f"first-byte p50\nvs nginx: {p50:.2f}", (i, max(rps[i], cpu[i]) + 0.12),
                        ha="center", fontsize=8)
    ax.set_ylim(0, max(rps + cpu + [1.2]) + 0.35)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
