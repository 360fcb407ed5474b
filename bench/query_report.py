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


def _pg32(results: dict[str, Any], clients: int) -> dict[str, Any] | None:
    pg = results.get("peers", {}).get("pgvector")
    if not isinstance(pg, dict) or pg.get("status") != "ok":
        return None
    for row in pg.get("concurrency", []):
        if row["clients"] == clients:
            return dict(row)
    return None


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The query path's targets (metadata, filters, exact search), each with its measured
    value and whether it is met."""
    out: list[dict[str, Any]] = []
    rows = results["config"]["rows"]
    p50_max = {1: 1.5, 4: 2.5}
    for key, c in results["cluster"].items():
        s = int(key)
        b, single = c["batch"], c["single"]
        out += [
            _target(f"{s} shard(s): metadata / ids batch QPS",
                    b["metadata"]["qps"] / b["ids"]["qps"], 0.9),
            _target(f"{s} shard(s): metadata / ids single p50",
                    single["metadata"]["p50_ms"] / single["ids"]["p50_ms"], 1.1, at_most=True),
        ]  # fmt: skip
        if s == 1 and c.get("at_target", {}).get("ef"):
            t = c["at_target"]
            out.append(_target("1 shard: cluster ids batch QPS / raw hnswlib, each at its "
                               "smallest ef reaching the target", t["qps_ids"] / t["raw_qps"],
                               0.7))  # fmt: skip
        if s > 1:
            out.append(_target(f"{s} shards: cluster ids batch QPS / in-process sharded ideal",
                               b["ids"]["qps"] / c["in_turn_qps"][f"ideal_{s}"], 0.85))
        if s in p50_max:
            out.append(_target(f"{s} shard(s): single query p50 ms with metadata",
                               single["metadata"]["p50_ms"], p50_max[s], at_most=True))
        conc = c["concurrent"]["metadata"]
        if s == 1:
            pg = _pg32(results, conc["clients"])
            if pg is not None:
                out.append(_target(f"1 shard: {conc['clients']} clients with metadata QPS / "
                                   "pgvector's", conc["qps"] / pg["qps"], 1.0))
            out += [
                _target(f"1 shard: {conc['clients']} clients with metadata p99 ms",
                        conc["p99_ms"], 40.0, at_most=True),
                _target(f"1 shard: {conc['clients']} clients with metadata errors",
                        float(conc["errors"]), 0.0, at_most=True),
            ]  # fmt: skip
        f = c["filtered"]
        out += [
            _target(f"{s} shard(s): filtered ({f['selectivity']:.1%}) single p50 ms with "
                    "metadata", c["filtered_single"]["metadata"]["p50_ms"], 2.0, at_most=True),
            _target(f"{s} shard(s): filtered / unfiltered batch QPS with metadata",
                    f["batch"]["metadata"]["qps"] / b["metadata"]["qps"], 0.5),
            _target(f"{s} shard(s): exact single query p50 ms over {rows:,} rows, metadata",
                    c["exact_single"]["metadata"]["p50_ms"], 10.0, at_most=True),
            _target(f"{s} shard(s): recall@10 at defaults", b["metadata"]["recall"], 0.95),
        ]  # fmt: skip
    return out


Row = tuple[str, str, str, str, str, str]


def _lat(name: str, setting: str, r: dict[str, Any]) -> Row:
    return (name, setting, f"{r['recall']:.4f}", f"{r['qps']:,.0f}", f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}")  # fmt: skip


def _rows(results: dict[str, Any]) -> list[Row]:
    a = results["single"]
    rows: list[Row] = [
        ("(a) hnswlib, one index", f"ef {a['min_ef']}", f"{a['recall']:.4f}",
         f"{a['qps']:,.0f}", "", ""),
    ]  # fmt: skip
    if "exact_reference" in results:
        e = results["exact_reference"]
        rows.append(("(a) NumPy exact scan, 1 query", f"{e['rows']:,.0f} rows, best "
                     f"{e['best_ms']:.2f} ms", "1.0000", "", f"{e['p50_ms']:.2f}", ""))
    for key, b in results["inprocess"].items():
        rows.append((f"(b) in-process, {key} shard(s)", f"k' {b['k_shard']}, ef {b['ef']}",
                     f"{b['recall']:.4f}", f"{b['qps']:,.0f}", "", ""))  # fmt: skip
    for key, c in results["cluster"].items():
        tag = f"(c) {key} shard(s)"
        q = c["in_turn_qps"]
        rows.append((f"{tag}, in turn: ideal", f"ef {c['ef']}", "", f"{q[f'ideal_{key}']:,.0f}",
                     "", ""))  # fmt: skip
        if "raw_at_target" in q:
            rows.append((f"{tag}, in turn: raw hnswlib", f"ef {a['min_ef']}", f"{a['recall']:.4f}",
                         f"{q['raw_at_target']:,.0f}", "", ""))  # fmt: skip
        for mode, b in c["batch"].items():
            rows.append((f"{tag}, batch {mode}", f"default (ef {c['ef']})",
                         f"{b['recall']:.4f}", f"{b['qps']:,.0f}", "", ""))  # fmt: skip
        if c.get("at_target", {}).get("ef"):
            t = c["at_target"]
            for mode in ("ids", "metadata"):
                rows.append((f"{tag}, batch {mode}", f"ef {t['ef']}", f"{t['recall']:.4f}",
                             f"{t[f'qps_{mode}']:,.0f}", "", ""))  # fmt: skip
        f = c["filtered"]
        for mode, b in f["batch"].items():
            rows.append((f"{tag}, filtered batch {mode}", f"{f['selectivity']:.1%} rows",
                         f"{b['recall']:.4f}", f"{b['qps']:,.0f}", "", ""))  # fmt: skip
        for key2, label in (("single", "1 client"), ("filtered_single", "1 client filtered"),
                            ("exact_single", "1 client exact")):
            for mode in ("ids", "metadata"):
                r = c[key2][mode]
                rows.append(_lat(f"{tag}, {label} {mode}", f"errors {r['errors']}", r))
        for mode, r in c["concurrent"].items():
            rows.append(_lat(f"{tag}, {r['clients']} clients {mode}",
                             f"{r['processes']} procs x {r['threads']}, errors {r['errors']}", r))
    for key, p in results.get("peers", {}).items():
        if not isinstance(p, dict):
            continue
        at = p.get("at_target")
        if p.get("status") != "ok" or not at:
            rows.append((f"(d) {key}", str(p.get("status", "?"))[:40], "", "", "", ""))
            continue
        single = p.get("single", {})
        batch = f", {p['batch']}" if p.get("batch") else ""
        rows.append((f"(d) {p['name']} {p.get('version', '')}", f"ef {at['ef']}{batch}",
                     f"{at['recall']:.4f}", f"{at['qps']:,.0f}",
                     f"{single.get('p50_ms', float('nan')):.2f}",
                     f"{single.get('p99_ms', float('nan')):.2f}"))  # fmt: skip
        for r in p.get("concurrency", []):
            rows.append(_lat(f"(d) {p['name']}, {r['clients']} clients",
                             f"ef {at['ef']}, errors {r['errors']}", r))
        for f in p.get("filtered", {}).values():
            if isinstance(f, dict):
                rows.append(_lat(f"(d) {p['name']}, WHERE {f['where']}",
                                 f"ef {f['ef']}, iterative_scan {f['iterative_scan']}", f))
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
    """Recall@10 against QPS (log): (a)'s ef sweep, (b), the cluster's batches and concurrent
    clients at each shard count, and the peers' sweeps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    pts = results["single"]["sweep"]
    if pts:
        ax.plot([p["recall"] for p in pts], [p["qps"] for p in pts], "o-",
                label="(a) hnswlib, one index")  # fmt: skip
        for p in pts[:: max(1, len(pts) // 5)]:
            ax.annotate(str(p["ef"]), (p["recall"], p["qps"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))  # fmt: skip
    for key, b in results["inprocess"].items():
        ax.plot([b["recall"]], [b["qps"]], "s", label=f"(b) in-process, {key} shard(s)")
    for key, c in results["cluster"].items():
        for mode, b in c["batch"].items():
            ax.plot([b["recall"]], [b["qps"]], "^", label=f"(c) {key} shard(s), batch {mode}")
        r = c["concurrent"]["metadata"]
        ax.plot([r["recall"]], [r["qps"]], "D",
                label=f"(c) {key} shard(s), {r['clients']} clients metadata")  # fmt: skip
    for key, p in results.get("peers", {}).items():
        if isinstance(p, dict) and p.get("status") == "ok" and p.get("sweep"):
            pts = p["sweep"]
            ax.plot([q["recall"] for q in pts], [q["qps"] for q in pts], "x--",
                    label=f"(d) {p.get('name', key)}")  # fmt: skip
    ax.axvline(0.95, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (log)")
    cfg = results["config"]
    ax.set_title(f"shardvec query path: {cfg['rows']:,} x {cfg['dim']}, shards {cfg['shards']}, "
                 f"{results['machine']['cpus']} CPUs")  # fmt: skip
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=7, loc="lower left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
