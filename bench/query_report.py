"""The query benchmark's report: target checks, the printed table, the recall-QPS plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _target(name: str, value: float, target: float, *, at_most: bool = False) -> dict[str, Any]:
    met = value <= target if at_most else value >= target
    if not math.isfinite(value):
        met = False
    ratio = value / target if target else float("nan")
    return {"name": name, "value": value, "target": target, "at_most": at_most, "met": met,
            "ratio_to_target": ratio}  # fmt: skip


def _conc(results: dict[str, Any], clients: int) -> dict[str, Any] | None:
    for row in results.get("cluster", {}).get("concurrency", []):
        if row["clients"] == clients:
            return dict(row)
    return None


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with its measured value and whether it is met."""
    c, b, a = results["cluster"], results["inprocess"], results["single"]
    h = c.get("head_to_head")  # timed in turn with the cluster: preferred when present
    over_b = h["cluster_over_inprocess"] if h else c["default"]["qps"] / b["default"]["qps"]
    over_a = h["cluster_over_single"] if h else c["at_target"]["qps"] / a["qps"]
    out = [
        _target("default recall@10 of the cluster", c["default"]["recall"], 0.95),
        _target("cluster batch QPS / in-process shards (same per-shard ef)", over_b, 0.85),
        _target("cluster batch QPS / raw one-index hnswlib (each at its smallest ef >= target)",
                over_a, 0.4),
    ]  # fmt: skip
    c32, c1 = _conc(results, 32), _conc(results, 1)
    if c32 is not None:
        out += [
            _target("32 clients QPS / cluster batch QPS", c32["qps"] / c["default"]["qps"], 0.5),
            _target("32 clients p99 ms", c32["p99_ms"], 25.0, at_most=True),
            _target("32 clients errors", float(c32["errors"]), 0.0, at_most=True),
        ]
    if c1 is not None:
        out.append(_target("1 client p50 ms (unloaded single query)", c1["p50_ms"], 2.0,
                           at_most=True))
    for key, peer in results.get("peers", {}).items():
        if not isinstance(peer, dict) or peer.get("status") != "ok" or not peer.get("at_target"):
            continue
        out.append(_target(f"cluster QPS at recall >= target / {key} batch QPS",
                           c["at_target"]["qps"] / peer["at_target"]["qps"], 1.0))
    return out


def _rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    a, b, c = results["single"], results["inprocess"], results["cluster"]
    rows = [
        ("(a) hnswlib, one index", f"ef {a['min_ef']}", f"{a['recall']:.4f}",
         f"{a['qps']:,.0f}", "", ""),
        ("(b) in-process shards", f"per-shard ef {b['default']['ef']}",
         f"{b['default']['recall']:.4f}", f"{b['default']['qps']:,.0f}", "", ""),
        ("(b) in-process shards", f"per-shard ef {b['at_target']['ef']}",
         f"{b['at_target']['recall']:.4f}", f"{b['at_target']['qps']:,.0f}", "", ""),
        ("(c) cluster, batches", f"default (ef {c['default']['ef']})",
         f"{c['default']['recall']:.4f}", f"{c['default']['qps']:,.0f}", "", ""),
        ("(c) cluster, 2 batch streams", f"default (ef {c['default']['ef']})",
         f"{c['default']['recall']:.4f}", f"{c['default'].get('qps_2_streams', 0):,.0f}", "",
         ""),
        ("(c) cluster, batches", f"ef {c['at_target']['ef']}", f"{c['at_target']['recall']:.4f}",
         f"{c['at_target']['qps']:,.0f}", "", ""),
    ]  # fmt: skip
    h = c.get("head_to_head")
    if h:
        names = {
            "single_at_target": f"(a) one index, ef {a['min_ef']}",
            "inprocess_default": f"(b) in-process, ef {b['default']['ef']}",
            "cluster_default": f"(c) cluster, ef {c['default']['ef']}",
            "cluster_at_target": f"(c) cluster, ef {c['at_target']['ef']}",
        }
        for key, label in names.items():
            rows.append(("head to head (in turn)", label, "", f"{h['qps'][key]:,.0f}", "", ""))
    for r in c.get("concurrency", []):
        rows.append((f"(d) cluster, {r['clients']} clients", f"errors {r['errors']}",
                     f"{r['recall']:.4f}", f"{r['qps']:,.0f}", f"{r['p50_ms']:.2f}",
                     f"{r['p99_ms']:.2f}"))  # fmt: skip
    for key, p in results.get("peers", {}).items():
        if not isinstance(p, dict):
            continue
        at = p.get("at_target")
        if p.get("status") != "ok" or not at:
            rows.append((f"(e) {key}", str(p.get("status", "?"))[:40], "", "", "", ""))
            continue
        single = p.get("single", {})
        batch = f", {p['batch']}" if p.get("batch") else ""
        rows.append((f"(e) {p['name']} {p.get('version', '')}", f"ef {at['ef']}{batch}",
                     f"{at['recall']:.4f}", f"{at['qps']:,.0f}",
                     f"{single.get('p50_ms', float('nan')):.2f}",
                     f"{single.get('p99_ms', float('nan')):.2f}"))  # fmt: skip
        for r in p.get("concurrency", []):
            rows.append((f"(e) {p['name']}, {r['clients']} clients",
                         f"ef {at['ef']}, errors {r['errors']}", f"{r['recall']:.4f}",
                         f"{r['qps']:,.0f}", f"{r['p50_ms']:.2f}",
                         f"{r['p99_ms']:.2f}"))  # fmt: skip
        for f in p.get("filtered", {}).values():
            if not isinstance(f, dict):
                continue
            rows.append((f"(e) {p['name']}, WHERE {f['where']}",
                         f"ef {f['ef']}, iterative_scan {f['iterative_scan']}",
                         f"{f['recall']:.4f}", f"{f['qps']:,.0f}", f"{f['p50_ms']:.2f}",
                         f"{f['p99_ms']:.2f}"))  # fmt: skip
    return rows


def format_table(results: dict[str, Any]) -> str:
    head = ("system", "setting", "recall@10", "QPS", "p50 ms", "p99 ms")
    rows = [head, *_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for t in results.get("targets", []):
        sign = "<=" if t["at_most"] else ">="
        lines.append(f"{'MET ' if t['met'] else 'MISS'}  {t['name']}: {t['value']:.3f} "
                     f"(target {sign} {t['target']})")  # fmt: skip
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Recall@10 against QPS (log) for the ef sweeps of (a), (b), (c), with (d) and peers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    series = [
        ("(a) hnswlib, one index", results["single"]["sweep"], "o-"),
        ("(b) in-process shards", results["inprocess"]["sweep"], "s-"),
        ("(c) cluster, 1000-query batches", results["cluster"].get("sweep", []), "^-"),
    ]
    for label, pts, style in series:
        if pts:
            ax.plot([p["recall"] for p in pts], [p["qps"] for p in pts], style, label=label)
            for p in pts[:: max(1, len(pts) // 5)]:
                ax.annotate(str(p["ef"]), (p["recall"], p["qps"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))  # fmt: skip
    for r in results["cluster"].get("concurrency", []):
        ax.plot([r["recall"]], [r["qps"]], "D", label=f"(d) cluster, {r['clients']} clients")
    for key, p in results.get("peers", {}).items():
        if isinstance(p, dict) and p.get("status") == "ok" and p.get("sweep"):
            pts = p["sweep"]
            ax.plot([q["recall"] for q in pts], [q["qps"] for q in pts], "x--",
                    label=f"(e) {p.get('name', key)}")  # fmt: skip
    ax.axvline(0.95, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (log)")
    cfg = results["config"]
    ax.set_title(f"shardvec query path: {cfg['rows']:,} x {cfg['dim']}, {cfg['shards']} shards, "
                 f"{results['machine']['cpus']} CPUs")  # fmt: skip
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=7, loc="lower left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
