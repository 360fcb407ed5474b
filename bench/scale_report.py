"""The scale-out benchmark's outputs: JSON, a flat CSV, a text table and three PNG plots."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

from shardvec.bench.results import write_results

PLOTS = ("qps_vs_shards.png", "latency_vs_concurrency.png", "recall_vs_qps.png")
POINT_COLUMNS = (
    "shards", "replicas", "nodes", "nodes_used", "n", "dim", "queries", "startup_s", "build_s",
    "build_rows_per_s", "batch_qps", "batch_ms", "recall_at_10", "coord_cpu_us_per_query_batch",
    "replica_cpu_us_per_query_batch", "replica_rss_mib", "coordinator_rss_mib",
)  # fmt: skip
LEVEL_COLUMNS = ("qps", "p50_ms", "p99_ms", "errors", "coord_cpu_us_per_query")


def label(p: dict[str, Any]) -> str:
    nodes = f" N{p['nodes']}" if p["nodes"] else ""
    return f"S{p['shards']} R{p['replicas']}{nodes}"


def flat_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per point, with `c<clients>_<measure>` columns per concurrency level."""
    rows = []
    for p in report["points"]:
        row = {c: p[c] for c in POINT_COLUMNS}
        for lvl in p["levels"]:
            for c in LEVEL_COLUMNS:
                row[f"c{lvl['clients']}_{c}"] = lvl[c]
        rows.append(row)
    return rows


def write_outputs(report: dict[str, Any], out: Path) -> list[Path]:
    """scale.json, scale.csv and the plots under `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    js, cs = write_results("scale", report, out / "scale.json"), out / "scale.csv"
    rows = flat_rows(report)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with cs.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return [js, cs, *plot(report, out)]


def plot(report: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = report["points"]
    paths = [out / name for name in PLOTS]

    # QPS against shards, one line per (replicas, nodes) group with more than one shard count.
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for p in points:
        groups[(p["replicas"], p["nodes"])].append(p)
    for (r, n), ps in sorted(groups.items()):
        ps = sorted(ps, key=lambda p: p["shards"])
        xs = [p["shards"] for p in ps]
        tag = f"R{r}" + (f" N{n}" if n else "")
        line = ax.plot(xs, [p["batch_qps"] for p in ps], "o-", label=f"{tag} batch")[0]
        if ps[0]["levels"]:
            top = max(lvl["clients"] for lvl in ps[0]["levels"])
            qps = [next(lv["qps"] for lv in p["levels"] if lv["clients"] == top) for p in ps]
            ax.plot(xs, qps, "s--", color=line.get_color(), label=f"{tag} {top} clients")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("shards")
    ax.set_ylabel("queries per second")
    ax.set_title("QPS against shards")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    # Latency against concurrency: p50 and p99, one line per point.
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharex=True)
    for p in points:
        lv = sorted(p["levels"], key=lambda x: x["clients"])
        xs = [x["clients"] for x in lv]
        axes[0].plot(xs, [x["p50_ms"] for x in lv], "o-", label=label(p))
        axes[1].plot(xs, [x["p99_ms"] for x in lv], "o-", label=label(p))
    for ax, what in zip(axes, ("p50", "p99"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent single-query clients")
        ax.set_ylabel(f"{what} latency (ms)")
        ax.set_title(f"{what} latency against concurrency")
        ax.grid(True, alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)

    # Recall against QPS: batch and best concurrent QPS of every point.
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p in points:
        conc = max((x["qps"] for x in p["levels"]), default=0.0)
        sc = ax.scatter([p["batch_qps"]], [p["recall_at_10"]], marker="o")
        ax.scatter([conc], [p["recall_at_10"]], marker="s", color=sc.get_facecolor())
        ax.annotate(label(p), (p["batch_qps"], p["recall_at_10"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")  # fmt: skip
    lowest = min((p["recall_at_10"] for p in points), default=0.0)
    ax.set_ylim(max(0.0, lowest - 0.05), 1.005)
    ax.set_xscale("log")
    ax.set_xlabel("queries per second (o: batch, s: best concurrent)")
    ax.set_ylabel("recall@10")
    ax.set_title("recall@10 against QPS")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths[2], dpi=110)
    plt.close(fig)
    return paths


def format_table(report: dict[str, Any]) -> str:
    """A Markdown table: one row per point."""
    points = report["points"]
    levels = sorted({lv["clients"] for p in points for lv in p["levels"]})
    head = ["point", "nodes used", "build s", "rows/s", "batch QPS", "recall@10"]
    for c in levels:
        head += [f"{c} cl QPS", f"{c} cl p50/p99 ms"]
    head += ["replica RSS MiB", "coord µs/q (batch)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        by = {lv["clients"]: lv for lv in p["levels"]}
        cells = [label(p), str(p["nodes_used"]), f"{p['build_s']:.1f}",
                 f"{p['build_rows_per_s']:,.0f}", f"{p['batch_qps']:,.0f}",
                 f"{p['recall_at_10']:.3f}"]  # fmt: skip
        for c in levels:
            lv = by.get(c)
            cells += (
                [f"{lv['qps']:,.0f}", f"{lv['p50_ms']:.1f} / {lv['p99_ms']:.1f}"]
                if lv
                else ["", ""]
            )
        rss, cpu = p["replica_rss_mib"], p["coord_cpu_us_per_query_batch"]
        cells += [f"{rss:,.0f}" if rss is not None else "n/a",
                  f"{cpu:,.0f}" if cpu is not None else "n/a"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
