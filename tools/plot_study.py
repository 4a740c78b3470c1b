#!/usr/bin/python3
"""Plots of the Trainium2 vs Trainium3 study (docs/studies/trn2-vs-trn3.md) from its sweep output.

Usage: tools/plot_study.py [-o OUTDIR] [SWEEP.jsonl ...]
  defaults: docs/studies/ and the study's three sweep outputs in docs/studies/data/
  (trn2-vs-trn3.jsonl, trn2-vs-trn3-gen2.jsonl; missing ones are skipped)

Reads the `trnsim sweep` JSON Lines (one trnsim.run/1 result per point) and writes
  trn2-vs-trn3-throughput.png  tokens/s and step time per model, trn2 vs trn3, BF16 vs FP8
  trn2-vs-trn3-mfu.png         MFU (against each cluster's peak at the GEMM dtype)
  trn2-vs-trn3-energy.png      energy per token, stacked by component
  trn2-vs-trn3-memory.png      memory per chip against each chip's HBM capacity
  trn2-vs-trn3-breakdown.png   stage 0's step: compute, exposed communication, pipeline wait

Optional tooling, not a build dependency: it needs matplotlib, on Debian
`apt-get install python3-matplotlib`, and is meant for Debian's /usr/bin/python3.
Prints a Markdown table of the headline metrics to stdout.
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GIB = 2**30
# Bars, in this order: (system, precision). FP8 is trn2's double-row FP8 on trn2 and MXFP8 (MX quad mode) on
# trn3, each chip preset's own FP8 mode.
SERIES = [
    ("trn2 64", "bf16"),
    ("trn2 64", "fp8"),
    ("trn3 64", "bf16"),
    ("trn3 64", "fp8"),
    ("trn3 144", "bf16"),
    ("trn3 144", "fp8"),
]
COLORS = {
    ("trn2 64", "bf16"): "#6baed6",
    ("trn2 64", "fp8"): "#2171b5",
    ("trn3 64", "bf16"): "#fd8d3c",
    ("trn3 64", "fp8"): "#d94701",
    ("trn3 144", "bf16"): "#74c476",
    ("trn3 144", "fp8"): "#238b45",
}
DEFAULT_INPUTS = [
    "docs/studies/data/trn2-vs-trn3.jsonl",
    "docs/studies/data/trn2-vs-trn3-gen2.jsonl",
]
ENERGY_PARTS = ["static", "hbm", "tensor_engine", "links", "sbuf"]
ENERGY_COLORS = {
    "static": "#969696",
    "hbm": "#6a51a3",
    "tensor_engine": "#31a354",
    "links": "#e6550d",
    "sbuf": "#fdd0a2",
}


def load(path):
    points = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if rec.get("status") != "ok":
                print(f"{path}: point {rec.get('point')} {rec.get('status')}: {str(rec.get('error'))[-160:]}", file=sys.stderr)
                continue
            r = rec["result"]
            dtype = "fp8" if "dtype fp8" in r["training"] else "bf16"
            system = f"{r['cluster']['chip']} {r['cluster']['chips']}"
            points.append({"model": r["model"], "cluster": r["cluster"]["name"], "chip": system, "dtype": dtype, "r": r})
    return points


def models_in_order(points):
    seen = []
    for p in points:
        if p["model"] not in seen:
            seen.append(p["model"])
    return seen


def series(points):
    """The (chip, dtype) bars in a fixed order."""
    return [key for key in SERIES if any((p["chip"], p["dtype"]) == key for p in points)]


def find(points, model, chip, dtype):
    for p in points:
        if p["model"] == model and p["chip"] == chip and p["dtype"] == dtype:
            return p
    return None


def oom_mark(ax, x, height, p):
    """Marks a bar of `height` at `x` whose point does not fit in HBM."""
    if not p["r"]["memory"]["fits"]:
        ax.annotate("OOM", (x, height * 0.5), ha="center", fontsize=8, color="red", rotation=90)


def label_series(ax, keys, title=None, ylabel=None):
    """One tick per (cluster, dtype) series; the panel's title and y label."""
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([f"{c}\n{d}" for c, d in keys], fontsize=8)
    if title is not None:
        ax.set_title(title, fontsize=10)
    if ylabel is not None:
        ax.set_ylabel(ylabel, fontsize=8)


def save(fig, title, outdir, fname):
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, fname), dpi=110)
    plt.close(fig)


def bar_panels(points, metric, ylabel, title, fname, outdir, fmt="{:.3g}"):
    models = models_in_order(points)
    keys = series(points)
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.6))
    if len(models) == 1:
        axes = [axes]
    for ax, model in zip(axes, models):
        for i, key in enumerate(keys):
            p = find(points, model, *key)
            if p is None:
                continue
            v = metric(p["r"])
            ax.bar(i, v, color=COLORS[key], label=f"{key[0]} {key[1]}")
            ax.annotate(fmt.format(v), (i, v), ha="center", va="bottom", fontsize=7)
            oom_mark(ax, i, v, p)
        label_series(ax, keys, model, ylabel)
        ax.margins(y=0.15)
    save(fig, title, outdir, fname)


def throughput(points, outdir):
    models = models_in_order(points)
    keys = series(points)
    fig, axes = plt.subplots(2, len(models), figsize=(5 * len(models), 6.4))
    for col, model in enumerate(models):
        for row, (metric, label, fmt) in enumerate(
            [
                (lambda r: r["tokens_per_s"], "tokens/s", "{:,.0f}"),
                (lambda r: r["step_time_s"], "step time (s)", "{:.1f}"),
            ]
        ):
            ax = axes[row][col]
            for i, key in enumerate(keys):
                p = find(points, model, *key)
                if p is None:
                    continue
                v = metric(p["r"])
                ax.bar(i, v, color=COLORS[key])
                ax.annotate(fmt.format(v), (i, v), ha="center", va="bottom", fontsize=7)
                oom_mark(ax, i, v, p)
            label_series(ax, keys, model if row == 0 else None, label)
            ax.margins(y=0.15)
    save(fig, "Training throughput per UltraServer (64 or 144 chips; one step, simulated)", outdir,
         "trn2-vs-trn3-throughput.png")


def energy(points, outdir):
    models = models_in_order(points)
    keys = series(points)
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8))
    for ax, model in zip(axes, models):
        for i, key in enumerate(keys):
            p = find(points, model, *key)
            if p is None:
                continue
            e = p["r"]["energy"]
            tokens = e["step_j"] / e["per_token_j"]
            bottom = 0.0
            for part in ENERGY_PARTS:
                parts = e.get("by_component", e.get("breakdown_j", {}))  # breakdown_j: results before 2026-11-26
                v = parts.get(part, 0.0) / tokens * 1e3  # mJ per token
                ax.bar(i, v, bottom=bottom, color=ENERGY_COLORS[part], label=part if i == 0 else None)
                bottom += v
            ax.annotate(f"{bottom:.0f}", (i, bottom), ha="center", va="bottom", fontsize=7)
            oom_mark(ax, i, bottom, p)
        label_series(ax, keys, model, "mJ per token")
        ax.margins(y=0.15)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save(fig, "Energy per token by component (all energy parameters are assumptions)", outdir,
         "trn2-vs-trn3-energy.png")


def memory(points, outdir):
    models = models_in_order(points)
    keys = series(points)
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8))
    for ax, model in zip(axes, models):
        for i, key in enumerate(keys):
            p = find(points, model, *key)
            if p is None:
                continue
            m = p["r"]["memory"]
            v = m["per_chip_bytes"] / GIB
            cap = m["capacity_bytes"] / GIB
            ax.bar(i, v, color=COLORS[key])
            ax.hlines(cap, i - 0.4, i + 0.4, colors="black", linestyles="dashed")
            ax.annotate(f"{v:.0f}/{cap:.0f}", (i, max(v, cap)), ha="center", va="bottom", fontsize=7)
            oom_mark(ax, i, v, p)
        label_series(ax, keys, model, "GiB per chip (dashed: HBM capacity)")
        ax.margins(y=0.15)
    save(fig, "Memory per chip (largest pipeline stage) vs HBM capacity", outdir, "trn2-vs-trn3-memory.png")


def breakdown(points, outdir):
    models = models_in_order(points)
    keys = series(points)
    parts = [("compute", "#31a354"), ("exposed comm", "#e6550d"), ("pipeline wait", "#969696")]
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8))
    for ax, model in zip(axes, models):
        for i, key in enumerate(keys):
            p = find(points, model, *key)
            if p is None:
                continue
            s0 = p["r"]["breakdown"][0]
            vals = {
                "compute": s0["busy_s"],
                "exposed comm": sum(s0["exposed_comm_s"].values()),
                "pipeline wait": s0["pipeline_wait_s"],
            }
            total = sum(vals.values())
            bottom = 0.0
            for name, color in parts:
                frac = vals[name] / total * 100.0
                ax.bar(i, frac, bottom=bottom, color=color, label=name if i == 0 else None)
                if frac > 6:
                    ax.annotate(f"{frac:.0f}%", (i, bottom + frac / 2), ha="center", va="center", fontsize=7)
                bottom += frac
        label_series(ax, keys, model, "% of stage 0's step time")
        ax.set_ylim(0, 100)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save(fig, "Where stage 0's step time goes", outdir, "trn2-vs-trn3-breakdown.png")


def table(points):
    print(
        "| model | cluster | dtype | step time (s) | tokens/s | MFU | mJ/token | pJ/param-token "
        "| GiB/chip (of) | fits |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for model in models_in_order(points):
        for key in series(points):
            p = find(points, model, *key)
            if p is None:
                continue
            r = p["r"]
            m = r["memory"]
            print(
                f"| {model} | {p['cluster']} | {p['dtype']} | {r['step_time_s']:.2f} | {r['tokens_per_s']:,.0f} "
                f"| {r['mfu'] * 100:.1f}% | {r['energy']['per_token_j'] * 1e3:.1f} "
                f"| {r['energy']['per_param_token_pj']:.2f} "
                f"| {m['per_chip_bytes'] / GIB:.1f} ({m['capacity_bytes'] / GIB:.0f}) "
                f"| {'yes' if m['fits'] else '**no**'} |"
            )


def main():
    args = sys.argv[1:]
    outdir = "docs/studies"
    if len(args) >= 2 and args[0] == "-o":
        outdir, args = args[1], args[2:]
    inputs = args or [p for p in DEFAULT_INPUTS if os.path.exists(p)]
    points = []
    for src in inputs:
        points += load(src)
    if not points:
        sys.exit(f"{' '.join(inputs)}: no successful points")
    os.makedirs(outdir, exist_ok=True)
    throughput(points, outdir)
    bar_panels(
        points,
        lambda r: r["mfu"] * 100,
        "MFU (%)",
        "MFU: model FLOPs / peak at the GEMM dtype (FP8 peak: 2x BF16 on trn2, MXFP8 4x BF16 on trn3)",
        "trn2-vs-trn3-mfu.png",
        outdir,
        fmt="{:.1f}",
    )
    energy(points, outdir)
    memory(points, outdir)
    breakdown(points, outdir)
    table(points)


if __name__ == "__main__":
    main()
