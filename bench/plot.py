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
    rows = [r for r in csv.DictReader(open(src)) if r["proxy"] == "zoo"]
    names = [r["scenario"] for r in rows]
    rps = [float(r["rps_vs_nginx"]) if r["rps_vs_nginx"] else 0 for r in rows]
    cpu = [float(r["cpu_vs_nginx"]) if r["cpu_vs_nginx"] else 0 for r in rows]
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
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
